"""The residual forecaster measured on the host (numpy + the edge's own stream; no TensorFlow).

The stream is `edge.models.series_forecast.ResidualStream`, the class the agent runs, so a file's
test RMSE and interval coverage here are what the device does. Also: the correction's weight and the
split-conformal half-widths (both set on held-out training months), and the export gate "never worse
than seasonal naive" on the test months.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edge.models.series_forecast import Forecast, ResidualStream, replay
from training.quality.evaluation import forecast_metrics, rmse

COVERAGES = (0.8, 0.95)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_GAIN = 0.01  # a correction must cut the held-out RMSE by this fraction to be admitted at all
HORIZON = {"monthly": "one month ahead", "quarterly": "one quarter ahead", "weekly": "one week ahead",
           "daily": "one day ahead", "hourly": "one hour ahead", "yearly": "one year ahead"}


class GateError(ValueError):
    """A forecaster that loses to the textbook baseline on the test months (the export refuses it)."""


def replay_months(stream: ResidualStream, values: np.ndarray) -> tuple[np.ndarray, list[Forecast]]:
    """Every month the stream forecasts (from month `span` on) and its forecast, from a cold stream."""
    made = replay(stream, values)
    targets = np.arange(stream.base.span, len(values))
    return targets, [made[t - 1] for t in targets]  # type: ignore[misc]


def value_of(level: np.ndarray, use_log: bool) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(level) if use_log else np.asarray(level, np.float64)


def choose_weight(forecasts: Sequence[Forecast], observed: np.ndarray, use_log: bool) -> tuple[float, dict]:
    """The weight of the correction with the lowest RMSE on these (held-out) months; 0 unless it gains
    MIN_GAIN over the base alone (the base is the floor)."""
    base = np.array([f.base_level for f in forecasts])
    corrections = np.array([f.correction for f in forecasts])
    scores = {w: rmse(value_of(base + w * corrections, use_log), observed) for w in WEIGHTS}
    best = min(scores, key=lambda w: (scores[w], w))
    if not math.isfinite(scores[best]) or scores[best] > scores[0.0] * (1 - MIN_GAIN):
        best = 0.0
    return best, {str(w): s for w, s in scores.items()}


def conformal_half_widths(residuals: np.ndarray, coverages: Sequence[float] = COVERAGES) -> list[float]:
    """Split-conformal: the ceil((n + 1) c)-th smallest |residual| (the largest when that exceeds n: with
    fewer than 1/(1-c) - 1 held-out months the bound cannot promise c, which the manifest records)."""
    ranked = np.sort(np.abs(np.asarray(residuals, np.float64)))
    n = len(ranked)
    return [float(ranked[min(n, math.ceil((n + 1) * c)) - 1]) for c in coverages]


def coverage(forecasts: Sequence[Forecast], observed: np.ndarray) -> dict[str, float]:
    """The fraction of months whose observed value fell inside each interval."""
    inside = np.array([f.inside(float(v)) for f, v in zip(forecasts, observed)])
    coverages = [c for c, _, _ in forecasts[0].bounds] if forecasts else []
    return {f"{c:g}": float(inside[:, i].mean()) for i, c in enumerate(coverages)}


def residual_metrics(values: np.ndarray, targets: np.ndarray, forecasts: Sequence[Forecast],
                     train_size: int, test_months: np.ndarray) -> dict:
    """Test RMSE etc. on the lecture's months (`forecast_metrics`) and the test months' interval coverage."""
    metrics = forecast_metrics(values, targets, np.array([f.value for f in forecasts]), train_size)
    by_month = dict(zip(targets.tolist(), forecasts))
    metrics["test_coverage"] = coverage([by_month[t] for t in test_months], values[test_months])
    return metrics


def never_worse_gate(metrics: dict, baselines_rmse: dict[str, float], tolerance: float = 1e-9) -> None:
    """Raise GateError when the file's test RMSE is above seasonal naive's on the same months."""
    naive = baselines_rmse.get("seasonal_naive", baselines_rmse.get("persistence"))
    if naive is not None and not metrics["test_rmse"] <= naive * (1 + tolerance):
        raise GateError(f"test RMSE {metrics['test_rmse']:.4g} is worse than seasonal naive's {naive:.4g} on the "
                        "same months: a forecaster that loses to the textbook baseline is not exported")
