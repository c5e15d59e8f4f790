"""The transform recipe: the LSTM forecasts the transformed series itself (no base). Reached with
`--profile lecture`, or `--transform` naming differences (e.g. log+d1+d12, the default before the
residual recipe of training/tasks/lstm.py). Exported as a step model the edge drives one reading at a time.

Two set-ups:
- `lecture`: the lecture exactly. MinMax scaling fitted on the whole series, raw values, windows
  of 5 with its off-by-one, 500 epochs, and evaluation that carries the state from the training
  windows into the test windows. Test RMSE about 49-75 passengers depending on the run.
- `--transform log+d1+d12` (any explicit spec): the same network (LSTM(4) + Dense, stateful, batch 1,
  no shuffling, state reset each epoch) on the transformed series; for the airline passengers
  w = (1 - B)(1 - B^12) log y, the
  change of the year-on-year growth. Features are scaled with the training months' mean and
  deviation; 13 steps of context (a season and one), 30 epochs. It forecasts w for the next
  month, which `edge.models.series_transform` turns back into a value. Evaluated one step ahead through every
  month as the edge runs it, and scored on the lecture's test months (101-142 for the airline
  series) beside the baselines of `training.quality.baselines` on the same months.
Both are int16x8 step models `(x, h, c) -> (y, h_out, c_out)`; the edge owns (h, c).

Quantization is calibrated on the step inputs over the whole series: for the lecture's raw
values the test years lie above the training ones (the series trends upward), and calibrating
on the training years alone clips every test input (we measured 30 passengers of error). Only
value ranges are taken from the later years, never targets.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel
from edge.models.series_transform import SeriesTransform
from training import plots
from training.datasets.errors import DatasetError
from training.datasets.series import SeriesData, load_series
from training.export import ExportError, ExportRequest, export_both
from training.models.lstm import build_step_model
from training.quality.baselines import baseline_metrics, winner
from training.quality.evaluation import (
    forecast_metrics,
    forecast_targets,
    lecture_targets,
    series_windows,
    step_through,
    to_values,
)
from training.series_transform import Candidate, TransformSpecError, parse_transform
from training.tasks.base import TaskResult
from training.tasks.lstm_common import LSTMConfig, check_constant, relative_change, train_stateful

log = logging.getLogger(__name__)

MAX_TEST_RMSE_CHANGE = 0.05  # quantized step model vs Keras stateful model, relative
MIN_TRAIN_WINDOWS = 4  # training windows the LSTM needs at least


def resolve_transform(cfg: LSTMConfig, series: SeriesData, train_size: int) -> tuple[Candidate, dict]:
    """The transform `cfg.transform` names (this recipe has no `auto`)."""
    values = series.values.astype(np.float64)
    try:
        explicit = parse_transform(cfg.transform)
    except TransformSpecError as exc:
        raise DatasetError(str(exc)) from None
    if cfg.protocol == "lecture" and explicit != Candidate(False, ()):
        raise DatasetError("the lecture protocol scales raw values: use --transform none with --profile lecture")
    if explicit is not None:
        if explicit.log and values.min() <= 0:
            raise DatasetError(f"{cfg.dataset}: the log transform needs values > 0 (minimum {values.min():g}); "
                               "use --transform auto, none or d1/d12 without log for this series")
        return explicit, {"transform": explicit.spec, "requested": cfg.transform}
    raise DatasetError("the transform recipe needs an explicit --transform (auto means the residual recipe)")


def check_lengths(cfg: LSTMConfig, chosen: Candidate, n: int, train_size: int) -> None:
    """Refuse, before any fitting, lags or a season the training months cannot carry: each window needs the
    transform's `order` earlier values and `look_back` features (a lag longer than the series gave no window
    at all: numpy's "need at least one array to stack"), and the seasonal baselines two seasons."""
    order = sum(chosen.differences)
    windows = train_size - order - cfg.look_back
    if windows < MIN_TRAIN_WINDOWS:
        longest = train_size - cfg.look_back - MIN_TRAIN_WINDOWS
        raise DatasetError(
            f"{cfg.dataset}: --transform {chosen.spec} needs {order} earlier values before each feature and the LSTM "
            f"{cfg.look_back} features per window: {n} values ({train_size} training months) leave {max(windows, 0)} "
            f"windows to train on (at least {MIN_TRAIN_WINDOWS}); "
            + (f"the lags may add up to {longest} at most" if longest > 0 else "use a longer series"))
    if cfg.season and 2 * cfg.season > train_size:
        raise DatasetError(f"{cfg.dataset}: --season {cfg.season} is too long for {n} values: the seasonal baselines "
                           f"need two seasons in the {train_size} training months; the longest season it supports is "
                           f"{train_size // 2}")


def make_transform(cfg: LSTMConfig, chosen: Candidate, values: np.ndarray, train_size: int) -> SeriesTransform:
    """Scaling of the model's feature: the lecture's min/max of the whole series, or, for the step
    protocol, mean and deviation of the training months' features only."""
    if cfg.protocol == "lecture":
        low, high = float(values.min()), float(values.max())
        return SeriesTransform(False, (), low, high - low)
    raw = SeriesTransform(chosen.log, chosen.differences)
    features = raw.features(np.array([raw.level(v) for v in values[:train_size]]))
    return dataclasses.replace(raw, offset=float(features.mean()), scale=float(features.std()) or 1.0)


@dataclass(frozen=True)
class Months:
    """The series as the model sees it: the values, how many months train, the transform, the months
    forecast (`targets`, in order) with each one's input window, and the levels (log values or not)."""

    values: np.ndarray
    train_size: int
    transform: SeriesTransform
    targets: np.ndarray
    windows: np.ndarray
    levels: np.ndarray

    def forecast_values(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs, one per target month -> forecast values."""
        return to_values(self.transform, outputs, self.levels, self.targets)


def prepare(cfg: LSTMConfig, series: SeriesData) -> tuple[Months, dict]:
    """The transform (named, or chosen on the training months), its scaling, the months to forecast
    and their windows; and the record of the choice for the manifest."""
    values = series.values.astype(np.float64)
    n, train_size = len(values), int(len(values) * cfg.train_fraction)
    chosen, choice = resolve_transform(cfg, series, train_size)
    check_lengths(cfg, chosen, n, train_size)
    log.info("LSTM on %s: transform %s (%s)", series.name, chosen.spec, choice)
    transform = make_transform(cfg, chosen, values, train_size)
    targets = forecast_targets(n, train_size, cfg.look_back, transform.order, cfg.protocol == "lecture")
    windows, levels = series_windows(transform, values, cfg.look_back, targets)
    return Months(values, train_size, transform, targets, windows, levels), choice


def fit(cfg: LSTMConfig, months: Months) -> tuple[keras.Model, keras.callbacks.History]:
    """The stateful LSTM trained on the training months' windows, to their scaled features."""
    train_rows = months.targets < months.train_size
    features = months.transform.features(months.levels)  # features[j] belongs to month j + order
    y_train = features[months.targets[train_rows] - months.transform.order]
    return train_stateful(cfg, months.windows[train_rows], y_train)


def step_model_of(cfg: LSTMConfig, model: keras.Model, months: Months,
                  keras_out: np.ndarray) -> tuple[keras.Model, list[dict]]:
    """The step model `(x, h, c) -> (y, h_out, c_out)` the edge runs, with its feed for every month
    from a zero state (representative data and parity checks); it must repeat the stateful model."""
    step_model = build_step_model(model)
    step_out, feeds = step_through(lambda f: step_model(f, training=False), months.windows, cfg.units)
    log.info("Keras step model vs stateful model: max |diff| %.2e", np.max(np.abs(step_out - keras_out)))
    return step_model, feeds


def evaluator(cfg: LSTMConfig, series: SeriesData, months: Months, baselines: dict, keras_values: np.ndarray,
              forecasts: dict[str, np.ndarray]) -> Callable[[TFLiteModel], dict]:
    """A file's metrics: its forecasts stepped through every month as the edge runs it, scored on the
    lecture's months beside the baselines; its forecasts are kept in `forecasts` for the picture."""
    lecture_windows = cfg.protocol == "lecture"
    protocol = ("lecture: train = first {0} points, look_back 5, off-by-one windows, state carried from train "
                "into test" if lecture_windows else "one step ahead through every month from month {1}, state "
                "carried; RMSE on the lecture's months").format(months.train_size, int(months.targets[0]))

    def evaluate(tfl: TFLiteModel) -> dict:
        out, _ = step_through(tfl.run, months.windows, cfg.units)
        forecasts[tfl.path.name] = months.forecast_values(out)
        metrics = forecast_metrics(months.values, months.targets, forecasts[tfl.path.name], months.train_size)
        return {**metrics, **baselines, "winner": winner(baselines["baselines_rmse"], metrics["test_rmse"]),
                "max_abs_diff_vs_keras": float(np.max(np.abs(forecasts[tfl.path.name] - keras_values))),
                "units": "passengers" if cfg.dataset == "airline" else series.column, "protocol": protocol}

    return evaluate


def export_request(cfg: LSTMConfig, series: SeriesData, transform: SeriesTransform, step_model: keras.Model,
                   feeds: list[dict], choice: dict, profile: str) -> ExportRequest:
    """The step model's manifest entry: the transform and scaling both ways, and the state tensors the
    edge owns; calibrated on every month's step inputs (see the module docstring)."""
    return ExportRequest(
        name="lstm", task="forecast", model=step_model,
        inputs={"x": (1, cfg.look_back, 1), "h": (1, cfg.units), "c": (1, cfg.units)},
        outputs=["y", "h_out", "c_out"], representative=lambda: iter(feeds),
        quantization=cfg.quantization,
        preprocess={"look_back": cfg.look_back, "offset": transform.offset, "scale": transform.scale, "input": "x",
                    "transform": transform.to_manifest(),
                    "note": "u = log(value) if transform.log; w = (1 - B^lag) applied for each lag in "
                            "transform.differences; x = (w - offset) / scale for the last look_back months"},
        postprocess={"offset": transform.offset, "scale": transform.scale, "output": "y",
                     "state": {"inputs": ["h", "c"], "outputs": ["h_out", "c_out"], "shape": [1, cfg.units],
                               "initial": [[0.0] * cfg.units, [0.0] * cfg.units]},
                     "note": "w_next = y * scale + offset, undone through the differences (and exp); feed "
                             "h_out/c_out back as h/c on the next step"},
        dataset=series.name, training={"profile": profile, **dataclasses.asdict(cfg), **choice},
        parity_tolerance={"y": 0.02, "h_out": 0.02, "c_out": 0.02},
    )


def acceptance(keras_metrics: dict) -> Callable[[list[ModelEntry]], None]:
    """The quantized file's test RMSE must stay within MAX_TEST_RMSE_CHANGE of the Keras model's."""

    def accept(entries: list[ModelEntry]) -> None:
        change = relative_change(entries[0].metrics["test_rmse"], keras_metrics["test_rmse"])
        if change > MAX_TEST_RMSE_CHANGE:
            raise ExportError(f"quantized LSTM test RMSE {entries[0].metrics['test_rmse']:.2f} is {change:.1%} "
                              f"away from Keras {keras_metrics['test_rmse']:.2f} (allowed {MAX_TEST_RMSE_CHANGE:.0%})")

    return accept


def run(cfg: LSTMConfig, out_dir: Path, report_dir: Path, profile: str) -> TaskResult:
    series = load_series(cfg.dataset)
    check_constant(cfg, series)
    months, choice = prepare(cfg, series)
    model, history = fit(cfg, months)
    keras_out = model.predict(months.windows, batch_size=1, verbose=0).ravel()  # state carried through in order
    keras_values = months.forecast_values(keras_out)
    keras_metrics = forecast_metrics(months.values, months.targets, keras_values, months.train_size)
    step_model, feeds = step_model_of(cfg, model, months, keras_out)
    _, test_months = lecture_targets(len(months.values), months.train_size)
    baselines = baseline_metrics(months.values, months.train_size, cfg.season or series.season, test_months)
    keras_metrics["winner"] = winner(baselines["baselines_rmse"], keras_metrics["test_rmse"])
    log.info("baselines on test months %s: %s; best: %s", keras_metrics["test_months"], baselines["baselines_rmse"],
             keras_metrics["winner"])
    forecasts: dict[str, np.ndarray] = {}
    test_feeds = [f for f, t in zip(feeds, months.targets) if t >= months.train_size]
    entries = export_both(export_request(cfg, series, months.transform, step_model, feeds, choice, profile), out_dir,
                          lambda: iter(test_feeds), evaluator(cfg, series, months, baselines, keras_values, forecasts),
                          keras_metrics, accept=acceptance(keras_metrics))
    lines = {"Keras stateful": keras_values, f"{entries[0].variant} step model": forecasts[entries[0].file]}
    pictures = [
        plots.training_curves(history.history, "stateful LSTM (MSE, scaled)", report_dir / "lstm_training.png"),
        plots.forecast(months.values, {k: (months.targets, v) for k, v in lines.items()}, months.train_size,
                       f"{series.name}: one-step forecasts", report_dir / "lstm_forecast.png"),
    ]
    return TaskResult(entries, pictures)

