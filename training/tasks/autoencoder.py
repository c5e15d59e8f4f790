"""Autoencoder: train on normal readings only, calibrate alerts on held-out normal data.

The model only produces a score (reconstruction MSE per input); the rule that turns scores into
alerts (threshold, k-of-n debouncing) lives on the edge and can be recalibrated without
retraining. What ships in the manifest is measured on the *quantized file's* scores:

- The lecture's data (independent draws, no time order): one reading per input, the threshold
  the given percentile of held-out normal errors, as before.
- A sensor CSV (a stream in time order): a window of W readings per input when there are fewer
  than `MIN_UNWINDOWED_FEATURES` columns (one column with W = 1 is an identity map plus a range
  check), W chosen by a sweep that asks which window makes faults injected into the normal period
  stand out best; a code narrower than the input whatever the width; optional calendar features
  and per-window normalisation (`edge.models.sensor_window`). Alerts are calibrated with
  `edge.alerts.calibration`: the user's false alarms per day and the reading period give the threshold
  and the k-of-n debounce, and the manifest carries the calibration table so the edge can state
  p-values and expected vs observed false alerts. With a clock it also carries the episode rule's plan,
  which the agent runs; that rule's own false episodes per day are measured out of sample, on held-out
  rows after its burn-in (`training.quality.episode_holdout`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge.alerts.calibration import MAX_FALSE_ALARMS_PER_DAY, AlertPlan, plan_alerts, rule_statistic, score_resolution
from edge.alerts.episode import EpisodePlan
from edge.alerts.ledger import episodes
from edge.alerts.support import support
from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel
from edge.models.sensor_window import model_inputs
from training import plots
from training.argtypes import rate, whole
from training.datasets.errors import DatasetError
from training.datasets.faults import KINDS, Fault, Spread, faulty_rows, inject
from training.datasets.sensors import SensorData, load_sensors
from training.export import ExportRequest, export_both
from training.models.autoencoder import build_autoencoder
from training.quality.episode_holdout import held_out_episodes
from training.quality.evaluation import anomaly_metrics, reconstruction_errors
from training.quality.holdout import cross_fitted
from training.tasks.base import Option, Task, TaskResult, set_seed
from training.tflite import run_batch

log = logging.getLogger(__name__)

MIN_UNWINDOWED_FEATURES = 4  # fewer columns than this: windows of readings by default
WINDOW_CANDIDATES = (4, 8, 16, 32)
SWEEP_STEPS = 600  # optimizer steps per candidate window in the sweep (it ranks windows, no more)
MAX_STEPS = 8000  # a long sensor recording is not trained for more steps than the lecture's data
FAULT_LENGTH = 24  # readings per injected fault in the sweep
SWEEP_FAULTS = 8  # faults of each kind per candidate


@dataclass
class AutoencoderConfig:
    dataset: str = "lecture"
    # None: the lecture's 32-16-32; N: a code of N numbers (models/autoencoder.py); 0: max(1, inputs // 4)
    code_units: int | None = 0
    hidden: tuple[int, int] = (64, 32)  # encoder widths, mirrored in the decoder (the lecture's: 32, 16)
    # readings per sample: W consecutive readings of F features, flattened (W * F inputs). None: 1 for
    # the lecture's independent draws and for CSVs of 4 columns or more; fewer columns: a sweep picks W
    window: int | None = None
    normal_rows: int | None = None  # sensor CSVs: the first N rows are the normal period (None: all)
    time_features: str = "none"  # sensor CSVs with a timestamp: none, day, week, day+week or auto
    window_norm: str = "none"  # none, mean or zscore per feature over each window (edge/models/sensor_window.py)
    # alerts on sensor CSVs (edge/alerts/calibration.py): the false alarms the user accepts on normal data, per day
    # (with a timestamp column) or per 1,000 readings (without); the k-of-n debounce follows the reading period
    false_alarms_per_day: float = 0.1
    false_alarms_per_1000: float = 1.0
    debounce_k: int | None = None  # None: derived from the reading period
    debounce_n: int | None = None
    epochs: int = 100
    batch_size: int = 100
    optimizer: str = "adam"  # the lecture's is SGD at Keras' default learning rate 0.01
    learning_rate: float = 3e-3
    cosine_decay: bool = True  # learning rate decays to 0 over the run: a tighter fit of the normal line
    threshold_percentile: float = 99.0  # the lecture's data: of held-out normal reconstruction errors
    # int16 activations: the one-number code spans the whole line, and int8 steps along it add as much
    # error as a "wrong" reading's offset (int8: 74.7% of wrong readings flagged, float: 79.2%)
    quantization: str = "int16x8"
    seed: int = 1


def scaling(data: SensorData) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) so that (value - offset) / scale lies in [-1, 1] (the tanh output's range).

    The lecture's data is fed unscaled (its values already lie in about [-1.1, 1]), which keeps
    its numbers comparable; any other CSV is mapped from its training range with a 10% margin.
    """
    features = data.train.shape[1]
    if data.name == "lecture":
        return np.zeros(features, np.float32), np.ones(features, np.float32)
    low, high = data.train.min(axis=0), data.train.max(axis=0)
    offset = (high + low) / 2
    scale = np.maximum((high - low) / 2 * 1.1, 1e-6)
    return offset.astype(np.float32), scale.astype(np.float32)


def code_size(width: int, code_units: int | None) -> int | None:
    """The code layer's width: None (the lecture's 32-16-32), N, or 0 for max(1, width // 4) -- always
    narrower than the input when the input has two numbers or more."""
    if code_units is None:
        return None
    code = code_units if code_units > 0 else max(1, width // 4)
    if code >= width:
        log.warning("a code of %d numbers for an input of %d is no bottleneck: the model can copy its input "
                    "and the score is a range check (use a window of 2 readings or more)", code, width)
    return code


def daily_cycle(values: np.ndarray, period_s: float | None, kinds: str) -> list[str]:
    """The calendar features to add: `kinds` is none, day, week, day+week, or auto.

    auto: "day" when the normal period spans 3 days or more and its first feature correlates with
    itself a day later (r > 0.3); "week" too when it spans 3 weeks and the weekly correlation is higher.
    """
    if kinds == "none":
        return []
    if kinds != "auto":
        return kinds.split("+")
    if not period_s or period_s > 3 * 3600:
        return []
    day = int(round(86400 / period_s))
    x = np.asarray(values[:, 0], np.float64)

    def lag_corr(lag: int) -> float:
        if len(x) < 3 * lag or lag < 1:
            return float("nan")
        a, b = x[:-lag], x[lag:]
        return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")

    daily, weekly = lag_corr(day), lag_corr(7 * day)
    chosen = ["day"] if daily > 0.3 else []
    if chosen and weekly > daily + 0.05:
        chosen.append("week")
    log.info("calendar features: correlation a day apart %.2f, a week apart %.2f -> %s", daily, weekly,
             chosen or "none")
    return chosen


def fit_model(x: np.ndarray, cfg: AutoencoderConfig, epochs: int, validation: np.ndarray | None = None,
              verbose: int = 0) -> tuple[keras.Model, dict]:
    width = x.shape[1]
    model = build_autoencoder(width, code_size(width, cfg.code_units), tuple(cfg.hidden))
    steps = epochs * int(np.ceil(len(x) / cfg.batch_size))
    rate = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps) if cfg.cosine_decay else cfg.learning_rate
    optimizer = keras.optimizers.SGD(rate) if cfg.optimizer == "sgd" else keras.optimizers.Adam(rate)
    model.compile(loss="mean_squared_error", optimizer=optimizer)
    history = model.fit(x, x, batch_size=cfg.batch_size, epochs=epochs, verbose=verbose,
                        validation_data=(validation, validation) if validation is not None else None)
    return model, history.history


def epochs_for(samples: int, cfg: AutoencoderConfig, max_steps: int) -> int:
    per_epoch = int(np.ceil(samples / cfg.batch_size))
    return max(1, min(cfg.epochs, max_steps // per_epoch))


def continued(before: np.ndarray, rows: np.ndarray, window: int) -> np.ndarray:
    """`rows` preceded by the last window - 1 rows before them, so every row of `rows` ends a window."""
    return np.concatenate([before[len(before) - (window - 1):], rows]) if window > 1 else rows


def sweep_window(values: np.ndarray, seconds: np.ndarray | None, pre: dict[str, Any], cfg: AutoencoderConfig,
                 candidates: tuple[int, ...] = WINDOW_CANDIDATES) -> tuple[int, dict[int, float]]:
    """The window whose model best tells injected faults from normal readings, on the normal period.

    The training rows are split 75/25 in time; each candidate is trained on the first part and
    scored on the second, clean and with faults of every kind (`training.datasets.faults`) injected. The
    figure of merit is the share of faulty readings whose window scores above the clean part's p99,
    averaged over the fault kinds; ties go to the shorter window (it alerts sooner).
    """
    split = int(len(values) * 0.75)
    fit_values, val_values = values[:split], values[split:]
    fit_seconds = seconds[:split] if seconds is not None else None
    val_seconds = seconds[split:] if seconds is not None else None
    spread = Spread.of(values)
    rng = np.random.default_rng(cfg.seed)
    usable = [w for w in candidates if split >= 10 * w and len(val_values) >= FAULT_LENGTH + 3 * w]
    if not usable:
        return (min(candidates[0], max(2, len(val_values) // 4)), {})
    faults = []
    for kind in KINDS:
        for _ in range(SWEEP_FAULTS):
            start = int(rng.integers(max(usable), len(val_values) - FAULT_LENGTH))  # room for the longest window
            faults.append(Fault(kind, start, start + FAULT_LENGTH, int(rng.integers(values.shape[1]))))
    merit: dict[int, float] = {}
    for w in usable:
        p = {**pre, "window": w}
        x_fit = model_inputs(fit_values, fit_seconds, p)
        model, _ = fit_model(x_fit, cfg, epochs_for(len(x_fit), cfg, SWEEP_STEPS))

        def score(v: np.ndarray, w: int = w, p: dict = p, model: keras.Model = model) -> np.ndarray:
            x = model_inputs(v, val_seconds, p)
            return np.concatenate([np.full(w - 1, np.nan), reconstruction_errors(
                lambda z: model.predict(z, verbose=0, batch_size=1024), x)])

        clean = score(val_values)
        limit = np.nanpercentile(clean, 99)
        found: dict[str, list[float]] = {k: [] for k in KINDS}
        for fault in faults:
            flagged = score(inject(val_values, fault, spread, rng))[faulty_rows(fault)] > limit
            found[fault.kind].append(float(np.mean(flagged)))
        merit[w] = float(np.mean([np.mean(v) for v in found.values()]))
        log.info("window sweep: W=%d finds %.1f%% of faulty readings (%s)", w, 100 * merit[w],
                 ", ".join(f"{k} {np.mean(v):.0%}" for k, v in found.items()))
    best = max(merit.values())
    chosen = min(w for w, m in merit.items() if m >= best - 0.01)
    return chosen, merit


def alert_metrics(plan: AlertPlan, statistic: dict[str, np.ndarray], period_s: float | None) -> dict[str, Any]:
    """Rule activity on each set at the plan's threshold: share of readings, episodes, per day."""
    metrics: dict[str, Any] = {}
    for name, stat in statistic.items():
        active = stat > plan.threshold
        metrics[f"alert_share_{name}"] = float(np.mean(active))
        metrics[f"alert_episodes_{name}"] = episodes(active)
        if period_s:
            metrics[f"alert_episodes_per_day_{name}"] = episodes(active) / (len(active) * period_s / 86400)
    return metrics


def preprocess_spec(cfg: AutoencoderConfig, data: SensorData) -> tuple[dict[str, Any], list[str]]:
    """The manifest's `preprocess` but the window: per-feature offset and scale, the calendar features
    (only with a clock) and the per-window normalisation; and the calendar features chosen."""
    offset, scale = scaling(data)
    period = data.period_s if data.ordered else None
    kinds = daily_cycle(data.train, period, cfg.time_features) if data.ordered and data.seconds else []
    if cfg.time_features not in ("none", "auto") and not data.seconds:
        log.warning("time features %r asked for, but %s has no timestamp column: none used", cfg.time_features,
                    data.name)
        kinds = []
    pre: dict[str, Any] = {"features": data.features, "offset": offset.tolist(), "scale": scale.tolist(),
                           "window": 1}
    if kinds:
        pre["time_features"] = kinds
    if cfg.window_norm != "none":
        pre["window_norm"] = cfg.window_norm
    return pre, kinds


def choose_window(cfg: AutoencoderConfig, data: SensorData, pre: dict[str, Any]) -> tuple[int, dict[int, float]]:
    """The configured window, else 1 where there is no order to window or the readings are wide enough
    to carry their own context, else the sweep's choice (and its figures)."""
    if cfg.window is not None:
        return cfg.window, {}
    if not data.ordered or len(data.features) >= MIN_UNWINDOWED_FEATURES:
        return 1, {}
    window, sweep = sweep_window(data.train, data.seconds.get("train"), pre, cfg)
    log.info("window: %d readings (sweep: %s)", window, sweep or "too few rows, smallest candidate")
    return window, sweep


@dataclass
class InputSets:
    """Every set as the model sees it, built as the edge builds its inputs (edge.models.sensor_window): `sets`
    holds clean (the training rows), test (the held-out normal rows) and the labelled anomalous sets,
    or for a sensor CSV `after` (the readings after the normal period); `pre` is the manifest's
    preprocess, `sweep` the window sweep's figures (empty when the window was not swept)."""

    data: SensorData
    pre: dict[str, Any]
    kinds: list[str]
    sweep: dict[int, float]
    sets: dict[str, np.ndarray]

    @property
    def window(self) -> int:
        return self.pre["window"]

    @property
    def width(self) -> int:
        return self.sets["clean"].shape[1]

    @functools.cached_property
    def period(self) -> float | None:
        return self.data.period_s if self.data.ordered else None

    @property
    def anomalous(self) -> list[str]:
        return [k for k in self.data.anomalous if k in self.sets]


def check_window(window: int, data: SensorData) -> None:
    """A window longer than the training rows or the held-out rows leaves that set without an input: refused
    with the numbers (a KeyError 'clean' / 'test' after the sweep otherwise)."""
    largest = min(len(data.train), len(data.validation))
    if window <= largest:
        return
    normal = len(data.train) + len(data.validation)
    rows = normal + len(data.anomalous.get("after", ())) if data.ordered else normal
    raise DatasetError(f"{data.name}: a window of {window} readings leaves no training or held-out inputs: {rows} "
                       f"rows, {normal} of them normal ({len(data.train)} to train on, the last {len(data.validation)} "
                       f"held out); the largest window that works is {largest} (--window {largest} or less, or more "
                       "normal rows)")


def input_sets(cfg: AutoencoderConfig, data: SensorData) -> InputSets:
    """Preprocessing, window and every set's inputs. In a time-ordered stream the held-out rows continue
    from the training rows, and the rows after the normal period from the held-out ones, so that every
    reading of a set ends a window (a set shorter than the window is left out)."""
    pre, kinds = preprocess_spec(cfg, data)
    window, sweep = choose_window(cfg, data, pre)
    check_window(window, data)
    pre["window"] = window
    seconds = data.seconds

    def inputs(name: str, values: np.ndarray, before: tuple[str, np.ndarray] | None = None) -> np.ndarray:
        secs = seconds.get(name)
        if before is not None and window > 1:  # continue from the set before, so each reading ends a window
            values = continued(before[1], values, window)
            secs = continued(seconds[before[0]], secs, window) if secs is not None else None
        return model_inputs(values, secs, pre)

    chain = {"test": ("train", data.train), "after": ("validation", data.validation)} if data.ordered else {}
    raw = {"clean": ("train", data.train), "test": ("validation", data.validation),
           **{k: (k, v) for k, v in data.anomalous.items()}}
    sets = {k: inputs(name, v, chain.get(k)) for k, (name, v) in raw.items() if len(v) >= window}
    return InputSets(data, pre, kinds, sweep, sets)


def calibration_set(cfg: AutoencoderConfig, sets: InputSets) -> np.ndarray:
    """Representative inputs for the quantized ranges: 1,000 clean inputs. A real stream leaves its
    training range (a warmer month, a drifting sensor): for a sensor CSV, inputs up to twice the
    training range too, or they saturate and the file parts from Keras."""
    clean = sets.sets["clean"]
    rng = np.random.default_rng(cfg.seed)
    calib = clean[rng.choice(len(clean), min(1000, len(clean)), replace=False)]
    if not sets.data.ordered:
        return calib
    width = sets.width
    return np.concatenate([calib, sets.sets["test"][:500], 2 * calib[:200], np.full((2, width), -2.0, np.float32),
                           np.full((2, width), 2.0, np.float32)]).astype(np.float32)


def score_floor(tfl: TFLiteModel) -> float:
    """The smallest score the file resolves: one input quantization step on every number of the input
    (float32: the float's own resolution). A threshold below it is a threshold of 0 for a flat line."""
    return score_resolution(next(iter(tfl.inputs.values())).scale)


class FileJudge:
    """Scores an exported file on every set and fits its alert plan on its own held-out scores (the file
    the edge runs is the one calibrated). The lecture's independent draws: a percentile, every reading
    judged alone. A stream: the k-of-n rule of `edge.alerts.calibration` for the user's false alarms per day
    (per 1,000 readings without a clock), with its activity on every set."""

    def __init__(self, cfg: AutoencoderConfig, sets: InputSets) -> None:
        self.cfg, self.sets = cfg, sets
        self.errors: dict[str, dict[str, np.ndarray]] = {}  # by file name
        self.plans: dict[str, AlertPlan] = {}  # by file name

    def __call__(self, tfl: TFLiteModel) -> dict:
        cfg = self.cfg
        errors = {k: reconstruction_errors(lambda x: run_batch(tfl, "reading", x)["reconstruction"], v)
                  for k, v in self.sets.sets.items()}
        self.errors[tfl.path.name] = errors
        if not self.sets.data.ordered:
            metrics = anomaly_metrics(errors, cfg.threshold_percentile, self.sets.anomalous)
            self.plans[tfl.path.name] = plan_alerts(errors["test"], alpha=1 - cfg.threshold_percentile / 100,
                                                    debounce=(1, 1))
            return metrics
        plan_for = functools.partial(self.plan, floor=score_floor(tfl))
        plan = plan_for(errors["test"])
        self.plans[tfl.path.name] = plan
        for warning in support(plan).warnings:
            log.warning("%s: %s", tfl.path.name, warning)
        return {**self.stream_metrics(errors, plan), **cross_fitted(errors["test"], plan_for, self.sets.period)}

    def plan(self, scores: np.ndarray, floor: float) -> AlertPlan:
        """The k-of-n plan for the user's rate on these normal scores (a stream's)."""
        cfg, period = self.cfg, self.sets.period
        return plan_alerts(scores, cfg.false_alarms_per_day if period else None, period,
                           alpha=None if period else cfg.false_alarms_per_1000 / 1000,
                           debounce=(cfg.debounce_k, cfg.debounce_n) if cfg.debounce_k else None, floor=floor)

    def stream_metrics(self, errors: dict[str, np.ndarray], plan: AlertPlan) -> dict[str, Any]:
        """A stream's figures at the plan: mean errors, the rule, the held-out span and the rates on the
        training rows (the held-out ones, out of sample, are `training.quality.holdout.cross_fitted`'s)."""
        period, cfg = self.sets.period, self.cfg
        statistic = {k: rule_statistic(v, plan.k, plan.n) for k, v in errors.items()}
        metrics: dict[str, Any] = {f"{k}_mse": float(v.mean()) for k, v in errors.items()}
        metrics.update(threshold=plan.threshold, threshold_source=plan.method, debounce_k=plan.k,
                       debounce_n=plan.n, period_s=period, window=self.sets.window,
                       code_units=code_size(self.sets.width, cfg.code_units),
                       holdout_readings=len(errors["test"]),
                       holdout_days=len(errors["test"]) * period / 86400 if period else None,
                       expected_false_alerts_per_day=plan.expected_per_day,
                       expected_false_alerts_per_1000=plan.expected_per_1000,
                       false_alarms_per_day_planned=plan.false_alarms_per_day,
                       false_alert_rate_clean=float(np.mean(statistic["clean"] > plan.threshold)))
        metrics.update(alert_metrics(plan, {k: v for k, v in statistic.items() if k != "test"}, period))
        for k in self.sets.anomalous:
            metrics[f"detection_rate_{k}"] = float(np.mean(statistic[k] > plan.threshold))
        return metrics

    def ship_plans(self, entries: list[ModelEntry]) -> None:
        """Each file's manifest entry carries the threshold and calibration measured on its own scores."""
        for entry in entries:
            alerts = {**self.plans[entry.file].to_json(), "support": support(self.plans[entry.file]).to_json()}
            if not self.sets.data.ordered:
                alerts.update(threshold=entry.metrics["threshold"], method=f"p{self.cfg.threshold_percentile:g}")
            elif self.sets.period and self.plans[entry.file].false_alarms_per_day:  # a clock: the episode rule
                alerts["episode"] = EpisodePlan.for_period(self.sets.period,
                                                           self.plans[entry.file].false_alarms_per_day).to_json()
            entry.postprocess = {**entry.postprocess, "threshold": entry.metrics["threshold"], "alerts": alerts}
            if self.sets.data.ordered:
                self.measure_episodes(entry)

    def measure_episodes(self, entry: ModelEntry) -> None:
        """The episode rule's own false episodes per day on the held-out normal rows, out of sample
        (`training.quality.episode_holdout`), from the entry's postprocess as shipped: what the agent runs."""
        errors, window = self.errors[entry.file], self.sets.window
        scores = np.concatenate([np.full(window - 1, np.nan), errors["clean"], errors["test"]])  # one per row
        found = held_out_episodes(entry.postprocess, scores, len(self.sets.data.train))
        if found is None:
            return
        entry.metrics.update(found.to_metrics())
        if found.warning():
            log.warning("%s: %s", entry.file, found.warning())


def descriptions(cfg: AutoencoderConfig, sets: InputSets) -> tuple[str, str]:
    """How the threshold was chosen and how the input is built, in words for the manifest."""
    if sets.data.ordered:
        method = ("k-of-n rule calibrated on held-out normal data (edge.alerts.calibration): "
                  + (f"{cfg.false_alarms_per_day:g} false alarms per day at the median reading period"
                     if sets.period else f"{cfg.false_alarms_per_1000:g} false alarms per 1,000 readings (no clock)"))
    else:
        method = f"p{cfg.threshold_percentile:g} of held-out normal reconstruction error, measured on this file"
    note = ("model input = (value - offset) / scale per feature"
            + (f", then sin/cos of the {' and '.join(sets.kinds)} phase" if sets.kinds else "")
            + ", for the last `window` readings flattened oldest first"
            + (f", each feature's window {cfg.window_norm}-normalised (edge.models.sensor_window)"
               if cfg.window_norm != "none" else ""))
    return method, note


def export_request(cfg: AutoencoderConfig, sets: InputSets, model: keras.Model, epochs: int,
                   profile: str) -> ExportRequest:
    """The autoencoder's manifest entry; its threshold is filled in per file once the file is measured."""
    method, note = descriptions(cfg, sets)
    calib = calibration_set(cfg, sets)
    return ExportRequest(
        name="autoencoder", task="anomaly", model=model, inputs={"reading": (1, sets.width)},
        outputs=["reconstruction"], representative=lambda: ({"reading": r[None]} for r in calib),
        preprocess={**sets.pre, "time_column": sets.data.time_column, "note": note},
        postprocess={"threshold": None, "threshold_method": method,
                     "score": "mean squared reconstruction error over the model input"},
        dataset=sets.data.name,
        training={"profile": profile, **dataclasses.asdict(cfg), "window": sets.window, "window_sweep": sets.sweep,
                  "time_features": sets.kinds, "epochs": epochs},
        quantization=cfg.quantization, parity_tolerance={"reconstruction": 0.01},
        parity_range_floor={"reconstruction": float(np.ptp(sets.sets["clean"]))},
    )


def run(cfg: AutoencoderConfig, out_dir: Path, report_dir: Path, profile: str) -> TaskResult:
    set_seed(cfg.seed)
    data = load_sensors(cfg.dataset, cfg.normal_rows)
    sets = input_sets(cfg, data)
    clean = sets.sets["clean"]
    # a long sensor recording is trained for a bounded number of steps; the lecture's data for its epochs
    epochs = cfg.epochs if not data.ordered else epochs_for(len(clean), cfg, MAX_STEPS)
    model, history = fit_model(clean, cfg, epochs, sets.sets["test"], verbose=2)
    keras_errors = {k: reconstruction_errors(lambda x: model.predict(x, verbose=0), v) for k, v in sets.sets.items()}
    keras_metrics = {f"{k}_mse": float(v.mean()) for k, v in keras_errors.items()}
    judge = FileJudge(cfg, sets)
    entries = export_both(export_request(cfg, sets, model, epochs, profile), out_dir,
                          lambda: ({"reading": r[None]} for r in sets.sets["test"][:300]), judge, keras_metrics)
    judge.ship_plans(entries)
    quantized = entries[0]
    pictures = [
        plots.training_curves(history, "autoencoder (MSE)", report_dir / "autoencoder_training.png"),
        plots.error_histogram(judge.errors[quantized.file], quantized.metrics["threshold"],
                              f"{quantized.variant} autoencoder: reconstruction error",
                              report_dir / "autoencoder_errors.png"),
    ]
    return TaskResult(entries, pictures)


TASK = Task(
    "autoencoder", AutoencoderConfig,
    profiles={"lecture": AutoencoderConfig(code_units=None, hidden=(32, 16), epochs=200, optimizer="sgd",
                                           learning_rate=0.01, cosine_decay=False, threshold_percentile=99.5,
                                           quantization="int8"),
              "default": AutoencoderConfig(),
              "quick": AutoencoderConfig(epochs=10)},
    run=run, datasets="lecture or FILE.csv[:COL1,COL2]",
    options=(
        Option("--window", "autoencoder: readings per sample (windowed mode for sensor CSVs)", type=whole(1)),
        Option("--normal-rows", "autoencoder on a sensor CSV: the first N rows are normal", type=whole(1)),
        Option("--false-alarms-per-day", "autoencoder on a sensor CSV with timestamps: false alerts accepted on "
               "normal data (default 0.1); the threshold and the k-of-n debounce follow from it and the reading "
               "rate", type=rate(at_most=MAX_FALSE_ALARMS_PER_DAY)),
        Option("--false-alarms-per-1000", "the same for a CSV without timestamps, per 1,000 readings (default 1)",
               type=rate(below=1000.0)),
        Option("--time-features", "autoencoder: sin/cos of the time of day / day of week beside each reading",
               choices=("none", "auto", "day", "week", "day+week")),
        Option("--window-norm", "autoencoder: normalise each feature over each window (shape, not level)",
               choices=("none", "mean", "zscore")),
    ),
    order=20,
)
