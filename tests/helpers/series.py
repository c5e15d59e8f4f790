"""The forecaster run offline: what the agent's forecasts must equal, step for step."""

from __future__ import annotations

import numpy as np

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.models.series_transform import SeriesTransform
from tests.conftest import MODELS_DIR
from training.quality.evaluation import forecaster_run

MANIFEST = read_manifest(MODELS_DIR / "manifest.json")


def first_forecast_step() -> int:
    """The reading after which the forecaster has enough history to forecast (0-based)."""
    pre = MANIFEST.get("lstm").preprocess
    return SeriesTransform.from_manifest(pre).order + pre["look_back"] - 1


def offline_forecasts(values: list[float]) -> list[float]:
    """The step model stepped through the readings offline: one forecast after each reading from
    `first_forecast_step()` on, each for the month after it."""
    entry = MANIFEST.get("lstm")
    targets = np.arange(first_forecast_step() + 1, len(values) + 1)
    return forecaster_run(TFLiteModel.from_entry(entry, MODELS_DIR).run, entry, np.asarray(values), targets)[1].tolist()
