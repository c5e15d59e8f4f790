"""Stateful LSTM forecaster, the residual recipe (the default): a seasonal base plus the LSTM's correction.

The base (edge/models/series_forecast.py) is the airline model's recursion on log or raw levels, its two
coefficients fitted by statsmodels on the training months (training/series_base.py), or seasonal naive
when that fits worse on the held-out months; log or raw is chosen by `--transform auto`
(training/series_transform.py). The LSTM (4 units, stateful, batch 1, the lecture's loop) sees the last
`look_back` base errors and forecasts the next one. Months, in order:
- before the held-out block (the last quarter of the training months, >= two seasons): the LSTM trains;
- the held-out block: the correction's weight (0 .. 1, 0 unless it helps) and the split-conformal
  half-widths of the 80% and 95% intervals are set;
- the test months (the lecture's, 101-142 for the airline series): only measured, on the exported file
  stepped as the agent steps it, beside seasonal naive and SARIMA (host-only baselines).
The export is refused when the file loses to seasonal naive on the test months. With weight 0 the
device's forecast is the base: on short series the base does most of the work (the manifest says
whether the correction was admitted). `--profile lecture` and `--transform` specs with differences run
the transform recipe (training/tasks/lstm_lecture.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel
from edge.models.series_forecast import Base, Correction, Intervals, ResidualStream, base_errors
from training import plots
from training.argtypes import whole
from training.datasets.errors import DatasetError
from training.datasets.series import SeriesData, load_series
from training.export import ExportError, ExportRequest, export_both
from training.models.lstm import build_step_model
from training.quality import forecast as fq
from training.quality.baselines import baseline_metrics, winner
from training.quality.evaluation import lecture_targets
from training.series_base import levels_of
from training.series_transform import BaseChoice, TransformSpecError, choose_base, parse_transform, validation_start
from training.tasks import lstm_lecture
from training.tasks.base import Option, Task, TaskResult
from training.tasks.lstm_common import LSTMConfig, check_constant, relative_change, train_stateful

log = logging.getLogger(__name__)

MAX_TEST_RMSE_CHANGE = 0.05  # quantized step model vs Keras step model, relative
MIN_FIT_MONTHS = 4  # base errors the correction trains on, at least (windows before the base's first error are 0s)


@dataclasses.dataclass(frozen=True)
class Split:
    values: np.ndarray
    train_size: int
    held_out: int  # first month of the held-out block
    season: int
    frequency: str | None

    @property
    def test_months(self) -> np.ndarray:
        return lecture_targets(len(self.values), self.train_size)[1]


def error_windows(base: Base, split: Split, look_back: int) -> tuple[np.ndarray, np.ndarray, Correction]:
    """The LSTM's training windows (the base errors before each month of [span, held_out)), its targets,
    and the scaling (mean and deviation of those errors)."""
    _, errors = base_errors(base, levels_of(split.values, base.log))
    months = np.arange(base.span, split.held_out)
    if len(months) < MIN_FIT_MONTHS:  # a short series still trains: its correction is then judged (and mostly
        raise DatasetError(f"{len(months)} months before the held-out block are too few to train the correction "
                           f"(at least {MIN_FIT_MONTHS}); use a longer series")  # refused) on the held-out block
    fit = errors[base.span:split.held_out]
    offset, scale = float(fit.mean()), float(fit.std()) or 1.0
    padded = np.concatenate([np.zeros(look_back), errors])
    x = np.stack([padded[t:t + look_back] for t in months])  # errors of months t-look_back .. t-1
    return (((x - offset) / scale)[..., None].astype(np.float32), ((errors[months] - offset) / scale).astype(
        np.float32), Correction(look_back, offset, scale, 1.0))


def recording(run: Callable[[dict], dict], feeds: list[dict]) -> Callable[[dict], dict]:
    def step(feed: dict) -> dict:
        feeds.append({k: np.array(v, np.float32) for k, v in feed.items()})
        return {k: np.asarray(v) for k, v in run(feed).items()}
    return step


def keras_stream(cfg: LSTMConfig, choice: BaseChoice, split: Split) -> tuple[keras.Model, ResidualStream, dict]:
    """Train the correction, then set its weight and the intervals on the held-out block (Keras step model)."""
    x, y, correction = error_windows(choice.base, split, cfg.look_back)
    model, history = train_stateful(cfg, x, y)
    step_model = build_step_model(model)
    feeds: list[dict] = []
    initial = [np.zeros((1, cfg.units), np.float32)] * 2
    stream = ResidualStream(choice.base, correction, Intervals(), recording(
        lambda f: step_model(f, training=False), feeds), initial)
    targets, forecasts = fq.replay_months(stream, split.values)
    held = (targets >= split.held_out) & (targets < split.train_size)
    chosen = [f for f, h in zip(forecasts, held) if h]
    weight, scores = fq.choose_weight(chosen, split.values[targets[held]], choice.base.log)
    observed = levels_of(split.values[targets[held]], choice.base.log)
    widths = fq.conformal_half_widths(observed - np.array([f.base_level + weight * f.correction for f in chosen]))
    stream = dataclasses.replace(stream, correction=dataclasses.replace(correction, weight=weight),
                                 intervals=Intervals(fq.COVERAGES, tuple(widths)))
    stream.run = lambda f: {k: np.asarray(v) for k, v in step_model(f, training=False).items()}
    record = {"weight_validation_rmse": scores, "weight": weight, "correction_admitted": weight > 0,
              "conformal_held_out_months": int(held.sum()), "history": history.history,
              "feeds": feeds, "feed_months": list(range(stream.base.span - 1, len(split.values)))}
    log.info("correction weight %s (held-out RMSE by weight %s); half-widths %s", weight, scores, widths)
    return step_model, stream, record


def evaluator(split: Split, baselines: dict, units: str, forecasts_out: dict) -> Callable[[TFLiteModel], dict]:
    """A file's metrics, stepped through every month by the edge's own stream."""

    def evaluate_with(run: Callable[[dict], dict], stream: ResidualStream, name: str) -> dict:
        live = dataclasses.replace(stream, run=run)
        targets, forecasts = fq.replay_months(live, split.values)
        forecasts_out[name] = (targets, np.array([f.value for f in forecasts]))
        metrics = fq.residual_metrics(split.values, targets, forecasts, split.train_size, split.test_months)
        return {**metrics, **baselines, "winner": winner(baselines["baselines_rmse"], metrics["test_rmse"]),
                "units": units, "horizon": fq.HORIZON.get(split.frequency or "", "one step ahead"),
                "protocol": f"one step ahead through every month from month {stream.base.span}, state carried; "
                            "RMSE and interval coverage on the lecture's test months"}

    return evaluate_with


def export_request(cfg: LSTMConfig, series: SeriesData, stream: ResidualStream, step_model: keras.Model,
                   feeds: list[dict], record: dict, profile: str) -> ExportRequest:
    """The manifest entry: base, correction and intervals in postprocess, the state the edge owns."""
    correction = stream.correction
    return ExportRequest(
        name="lstm", task="forecast", model=step_model,
        inputs={"x": (1, cfg.look_back, 1), "h": (1, cfg.units), "c": (1, cfg.units)},
        outputs=["y", "h_out", "c_out"], representative=lambda: iter(feeds), quantization=cfg.quantization,
        preprocess={"look_back": cfg.look_back, "input": "x", "offset": correction.offset, "scale": correction.scale,
                    "note": "x = (e - offset) / scale for the base errors e of the last look_back readings (0 "
                            "before the base can forecast; e = level - base forecast)"},
        postprocess={"output": "y", "offset": correction.offset, "scale": correction.scale,
                     "base": stream.base.to_manifest(), "correction": {"weight": correction.weight},
                     "intervals": stream.intervals.to_manifest(),
                     "state": {"inputs": ["h", "c"], "outputs": ["h_out", "c_out"], "shape": [1, cfg.units],
                               "initial": [[0.0] * cfg.units, [0.0] * cfg.units]},
                     "note": "edge.models.series_forecast: level = base + correction.weight * (y * scale + offset); "
                             "value = "
                             "exp(level) if base.log; bounds = level -/+ half_width; feed h_out/c_out back"},
        dataset=series.name, training={"profile": profile, "recipe": "residual", **dataclasses.asdict(cfg),
                                       **record},
        parity_tolerance={"y": 0.02, "h_out": 0.02, "c_out": 0.02},
    )


def acceptance(keras_metrics: dict, baselines: dict) -> Callable[[list[ModelEntry]], None]:
    """The quantized file stays within MAX_TEST_RMSE_CHANGE of Keras and never loses to seasonal naive."""

    def accept(entries: list[ModelEntry]) -> None:
        got = entries[0].metrics["test_rmse"]
        change = relative_change(got, keras_metrics["test_rmse"])
        if change > MAX_TEST_RMSE_CHANGE:
            raise ExportError(f"quantized LSTM test RMSE {got:.4g} is {change:.1%} away from Keras "
                              f"{keras_metrics['test_rmse']:.4g} (allowed {MAX_TEST_RMSE_CHANGE:.0%})")
        try:
            fq.never_worse_gate(entries[0].metrics, baselines["baselines_rmse"])
        except fq.GateError as exc:
            raise ExportError(str(exc)) from None

    return accept


def fit_months(train_size: int, season: int) -> int:
    """Months the correction trains on: from the base's first forecast (season + 1) to the held-out block."""
    return validation_start(train_size, season) - (season + 1)


def check_season(cfg: LSTMConfig, series: SeriesData, train_size: int, season: int) -> None:
    """Refuse, before any fitting, a season the series cannot carry: the base needs a season and one month
    before its first forecast, the held-out block two seasons (or a quarter of the training months), and
    the correction MIN_FIT_MONTHS between them (`--season 1000` on 144 months fitted SARIMA until killed)."""
    if fit_months(train_size, season) >= MIN_FIT_MONTHS:
        return
    fits = [s for s in range(2, train_size) if fit_months(train_size, s) >= MIN_FIT_MONTHS]
    given = "--season" if cfg.season else f"from its {series.frequency} dates" if series.season else "no season"
    longest = f"the longest season it supports is {max(fits)}" if fits else "it supports no season: use a longer series"
    held = train_size - validation_start(train_size, season)
    raise DatasetError(
        f"{cfg.dataset}: a season of {season} ({given}) is too long for {len(series.values)} values: of the "
        f"{train_size} training months the held-out block needs {held} and the base {season + 1} before its first "
        f"forecast, which leaves {max(fit_months(train_size, season), 0)} to train the correction (at least "
        f"{MIN_FIT_MONTHS}); {longest}")


def split_of(cfg: LSTMConfig, series: SeriesData) -> Split:
    values = series.values.astype(np.float64)
    train_size = int(len(values) * cfg.train_fraction)
    season = cfg.season or series.season or 1
    check_season(cfg, series, train_size, season)
    return Split(values, train_size, validation_start(train_size, season), season, series.frequency)


def run(cfg: LSTMConfig, out_dir: Path, report_dir: Path, profile: str) -> TaskResult:
    try:
        explicit = parse_transform(cfg.transform)
    except TransformSpecError as exc:
        raise DatasetError(str(exc)) from None
    if cfg.protocol == "lecture" or (explicit is not None and explicit.differences):
        return lstm_lecture.run(cfg, out_dir, report_dir, profile)
    series = load_series(cfg.dataset)
    check_constant(cfg, series)
    split = split_of(cfg, series)
    try:
        choice = choose_base(split.values, split.train_size, split.season, cfg.transform.strip().lower())
    except TransformSpecError as exc:
        raise DatasetError(f"{cfg.dataset}: {exc}") from None
    step_model, stream, record = keras_stream(cfg, choice, split)
    baselines = baseline_metrics(split.values, split.train_size, split.season, split.test_months)
    units = "passengers" if cfg.dataset == "airline" else series.column
    curves: dict = {}
    evaluate_with = evaluator(split, baselines, units, curves)
    keras_metrics = evaluate_with(stream.run, stream, "Keras step model")
    feeds, history = record.pop("feeds"), record.pop("history")
    test_feeds = [f for f, t in zip(feeds, record.pop("feed_months")) if t + 1 >= split.train_size]
    request = export_request(cfg, series, stream, step_model, feeds, {**choice.record, **record}, profile)
    entries = export_both(request, out_dir, lambda: iter(test_feeds),
                          lambda tfl: evaluate_with(tfl.run, stream, tfl.path.name), keras_metrics,
                          accept=acceptance(keras_metrics, baselines))
    lines = {"Keras step model": curves["Keras step model"], f"{entries[0].variant} file": curves[entries[0].file]}
    pictures = [
        plots.training_curves(history, "stateful LSTM on base errors (MSE, scaled)", report_dir / "lstm_training.png"),
        plots.forecast(split.values, lines, split.train_size, f"{series.name}: one-step forecasts",
                       report_dir / "lstm_forecast.png"),
    ]
    return TaskResult(entries, pictures)


TASK = Task(
    "lstm", LSTMConfig,
    profiles={"lecture": LSTMConfig(look_back=5, epochs=500, transform="none", protocol="lecture"),
              "default": LSTMConfig(),
              "quick": LSTMConfig(epochs=5)},
    run=run, datasets="airline or FILE.csv[:COLUMN]",
    options=(Option("--transform", "lstm: auto (log or raw levels chosen on held-out training months; short series "
                    "take the stated default), log, none; or a spec with differences (e.g. log+d1+d12) for the "
                    "transform recipe, the LSTM alone (the profile's own: auto)"),
             Option("--season", "lstm: season length in samples (default: from the CSV's dates)", type=whole(2))),
    order=40,
)
