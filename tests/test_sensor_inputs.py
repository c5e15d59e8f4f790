"""The edge scores a reading with the input the trainer built: `model_inputs` (edge/models/sensor_window.py)
with calendar features and per-window normalisation, the same numbers the interpreter sees offline; and the
pieces the trainer imports come without the pipeline stack."""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.models.sensor_window import model_inputs
from edge.pipelines.sensor.scorer import AnomalyScorer
from edge.readings import InvalidReading
from edge.timestamps import to_seconds
from tests.conftest import ROOT
from training.cli import main

START = datetime.datetime(2024, 3, 4)  # a Monday


def write_daily(path: Path, rows: int = 900) -> tuple[np.ndarray, list[str]]:
    """A 10-minute temperature whose level follows the time of day (a timestamp column and one value)."""
    rng = np.random.default_rng(7)
    t = np.arange(rows)
    values = 20 + 3 * np.sin(2 * np.pi * t / 144) + rng.normal(0, 0.2, rows)
    stamps = [(START + datetime.timedelta(minutes=10 * i)).isoformat() for i in range(rows)]
    path.write_text("timestamp,temp\n" + "\n".join(f"{s},{v:.4f}" for s, v in zip(stamps, values)) + "\n")
    return values, stamps


def offline_scores(model: TFLiteModel, entry, values: np.ndarray, stamps: list[str]) -> list[float]:
    """`model_inputs` on the whole recording, each row through the interpreter: the trainer's way."""
    x = model_inputs(values[:, None], np.array([to_seconds(s) for s in stamps]), entry.preprocess)
    spec = entry.inputs[0]
    scores = []
    for row in x:
        out = model.run({spec.name: row.reshape(spec.shape)})[entry.outputs[0].name]
        scores.append(float(np.mean((out.reshape(spec.shape).astype(np.float64) - row.reshape(spec.shape)) ** 2)))
    return scores


@pytest.mark.slow
def test_time_features_and_window_norm_score_on_the_edge_as_offline(tmp_path: Path) -> None:
    values, stamps = write_daily(tmp_path / "temp.csv")
    out = tmp_path / "models"
    assert main(["autoencoder", "--dataset", str(tmp_path / "temp.csv"), "--normal-rows", "800", "--window", "3",
                 "--time-features", "day", "--window-norm", "mean", "--profile", "quick", "--epochs", "3",
                 "--out", str(out), "--report", str(tmp_path / "r")]) == 0
    trained = read_manifest(out / "manifest.json").get("autoencoder")
    assert trained.preprocess["time_features"] == ["day"] and trained.preprocess["window_norm"] == "mean"
    model = TFLiteModel.from_entry(trained, out)
    for norm in ("mean", "zscore", "none"):  # the same file read with each normalisation: shapes agree
        entry = dataclasses.replace(trained, preprocess={**trained.preprocess, "window_norm": norm})
        scorer = AnomalyScorer(entry, model)
        edge = [scorer.score([v], ts) for v, ts in zip(values[:200], stamps[:200])]
        assert edge[:2] == [None, None]
        assert edge[2:] == offline_scores(model, entry, values[:200], stamps[:200]), norm  # exactly, not close
    with pytest.raises(InvalidReading, match="needs a 'ts' that is a time"):
        AnomalyScorer(trained, model).score([20.0], 17)  # a counter is no clock for the time of day


@pytest.mark.parametrize("module", ["edge.alerts.calibration", "edge.alerts.ledger", "edge.models.manifest",
                                    "edge.models.runtime", "edge.models.golden", "edge.models.classifier",
                                    "edge.models.sensor_window", "edge.models.series_transform", "edge.timestamps",
                                    "edge.update.chunks", "edge.models.series_forecast"])
def test_what_the_trainer_imports_comes_without_the_pipeline_stack_or_paho(module: str) -> None:
    script = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith(('edge.pipelines', 'paho'))))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
