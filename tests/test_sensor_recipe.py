"""The autoencoder's default recipe on a one-column sensor CSV: a windowed, bottlenecked model whose
alert rule is calibrated to a stated false-alarm rate; and the shared input builder (edge/models/sensor_window.py)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

from edge.alerts.calibration import AlertPlan, rule_statistic
from edge.alerts.episode import EpisodePlan
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.models.sensor_window import calendar_features, model_inputs, window_inputs
from edge.pipelines.sensor.scorer import AnomalyScorer
from edge.timestamps import to_seconds
from training.cli import main
from training.quality.summary import results_table
from training.tflite import run_batch

START = datetime.datetime(2024, 3, 4)  # a Monday


def write_one_column(path: Path, rows: int = 2400) -> tuple[np.ndarray, list[str]]:
    """A 5-minute temperature with a daily cycle and sensor noise (a timestamp column and one value)."""
    rng = np.random.default_rng(4)
    t = np.arange(rows)
    values = 20 + 3 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.3, rows)
    stamps = [(START + datetime.timedelta(minutes=5 * i)).isoformat(sep=" ") for i in range(rows)]
    path.write_text("timestamp,temp\n" + "\n".join(f"{s},{v:.4f}" for s, v in zip(stamps, values)) + "\n")
    return values, stamps


@pytest.mark.slow
def test_one_column_csv_gets_a_windowed_bottlenecked_calibrated_model(tmp_path: Path) -> None:
    values, stamps = write_one_column(tmp_path / "temp.csv")
    out = tmp_path / "models"
    # no --window, no column: the recipe must choose both
    assert main(["autoencoder", "--dataset", str(tmp_path / "temp.csv"), "--normal-rows", "2000",
                 "--profile", "quick", "--false-alarms-per-day", "0.5", "--out", str(out),
                 "--report", str(tmp_path / "r")]) == 0
    entry = read_manifest(out / "manifest.json").get("autoencoder")
    width = entry.inputs[0].shape[1]
    assert entry.preprocess["features"] == ["temp"]  # the timestamp column is not a reading
    assert entry.preprocess["window"] > 1 and width == entry.preprocess["window"]
    assert entry.metrics["code_units"] < width  # a real bottleneck
    assert str(entry.preprocess["window"]) in entry.training["window_sweep"]  # chosen by the sweep (JSON keys)
    alerts = entry.postprocess["alerts"]
    assert alerts["period_s"] == 300 and (alerts["debounce_k"], alerts["debounce_n"]) == (2, 3)
    assert alerts["false_alarms_per_day"] == 0.5
    assert alerts["expected_false_alerts_per_day"] <= 0.5 * 1.01
    assert entry.postprocess["threshold"] == alerts["threshold"] == entry.metrics["threshold"]
    # the episode rule's plan for the agent: every number it needs, in readings of this stream's period
    assert alerts["episode"] == EpisodePlan.for_period(300, 0.5).to_json()
    assert alerts["episode"]["burn_in"] == 750 and alerts["episode"]["false_episodes_per_day"] == 0.5
    # the edge's scorer on the raw readings gives the scores the calibration used (same input builder)
    scorer = AnomalyScorer(entry, TFLiteModel.from_entry(entry, out))
    edge_scores = np.array([s for s in (scorer.score([v]) for v in values[:700]) if s is not None])
    x = model_inputs(values[:700, None], np.array([to_seconds(s) for s in stamps[:700]]), entry.preprocess)
    model = TFLiteModel.from_entry(entry, out)
    batch = np.mean((run_batch(model, "reading", x)["reconstruction"] - x) ** 2, axis=1)
    assert np.allclose(edge_scores, batch, rtol=1e-5, atol=1e-9)
    # a level shift of 3 sd after the normal period is found by the calibrated rule
    plan = AlertPlan.from_json(alerts)
    shifted = values.copy()
    shifted[2200:2260] += 3 * values[:2000].std()
    xs = model_inputs(shifted[:, None], np.array([to_seconds(s) for s in stamps]), entry.preprocess)
    scores = np.mean((run_batch(model, "reading", xs)["reconstruction"] - xs) ** 2, axis=1)
    active = rule_statistic(scores, plan.k, plan.n) > plan.threshold
    offset = len(values) - len(xs)
    assert active[2200 - offset:2260 - offset].any()
    table = results_table(read_manifest(out / "manifest.json"))
    assert "temp" in table and "expected false alerts per day" in table and "0.0008" not in table
    assert "the agent runs the episode rule planned for 0.5 false episodes/day" in table


def test_calendar_features_and_window_norm() -> None:
    monday_noon = to_seconds("2024-03-04 12:00:00")
    day_sin, day_cos, week_sin, week_cos = calendar_features(np.array([monday_noon]), ["day", "week"])[0]
    assert (day_sin, day_cos) == pytest.approx((0.0, -1.0), abs=1e-9)  # half-way through the day
    assert np.arctan2(week_sin, week_cos) == pytest.approx(2 * np.pi * 0.5 / 7)  # Monday noon
    assert to_seconds("2024-03-04T12:00:00+02:00") == monday_noon  # wall clock kept
    pre = {"features": ["a"], "offset": [0.0], "scale": [1.0], "window": 3, "window_norm": "zscore"}
    rows = np.array([[1.0], [1.0], [1.0], [4.0]], np.float32)
    x = window_inputs(rows, pre)
    assert x.shape == (2, 3) and np.allclose(x[0], 0)  # a stuck (flat) window stays at zero, not NaN
    assert np.allclose(x[1], [-1 / np.sqrt(2), -1 / np.sqrt(2), np.sqrt(2)])
    plain = window_inputs(rows, {**pre, "window_norm": "none"})
    assert np.array_equal(plain, [[1, 1, 1], [1, 1, 4]])
    with pytest.raises(ValueError, match="timestamp"):
        model_inputs(rows, None, {**pre, "time_features": ["day"]})
