"""The forecaster run offline: what the agent's forecasts (and its interval coverage) must equal, step for step."""

from __future__ import annotations

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.models.series_forecast import Forecast, is_residual, replay, stream_from_manifest
from edge.models.series_transform import SeriesTransform
from tests.conftest import MODELS_DIR

MANIFEST = read_manifest(MODELS_DIR / "manifest.json")


def first_forecast_step() -> int:
    """The reading after which the forecaster has enough history to forecast (0-based)."""
    entry = MANIFEST.get("lstm")
    if is_residual(entry.postprocess):
        return int(entry.postprocess["base"]["season"])  # the base needs season + 1 readings
    return SeriesTransform.from_manifest(entry.preprocess).order + entry.preprocess["look_back"] - 1


def offline_replay(values: list[float]) -> list[Forecast]:
    """The committed file stepped through the readings by the edge's stream, outside any agent: the forecast
    made after each reading from `first_forecast_step()` on (each for the reading after it)."""
    entry = MANIFEST.get("lstm")
    stream = stream_from_manifest(entry.preprocess, entry.postprocess, TFLiteModel.from_entry(entry, MODELS_DIR).run)
    return replay(stream, values)[first_forecast_step():]  # type: ignore[return-value]


def offline_forecasts(values: list[float]) -> list[float]:
    return [f.value for f in offline_replay(values)]


def offline_coverage(values: list[float]) -> tuple[int, list[int]]:
    """(forecasts scored, how many observed values fell inside each interval): the agent's ledger, offline."""
    made = offline_replay(values)
    hits = [f.inside(v) for f, v in zip(made, values[first_forecast_step() + 1:])]
    return len(hits), [sum(h[i] for h in hits) for i in range(len(made[0].bounds))]
