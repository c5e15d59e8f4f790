"""The autoencoder's windowed mode on a sensor CSV: W readings of F features per sample, trained on the
normal period, threshold from a held-out normal slice, and the edge scoring windows the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.alerts.rule import AnomalyRule
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.pipelines.sensor.scorer import AnomalyScorer
from training.cli import main


def write_machine_csv(path: Path) -> np.ndarray:
    """Two sensors turning together (sine/cosine); from row 800 the second one runs backwards."""
    rng = np.random.default_rng(0)
    t = np.arange(1000)
    a = np.sin(2 * np.pi * t / 40) + rng.normal(0, 0.05, 1000)
    b = np.cos(2 * np.pi * t / 40) + rng.normal(0, 0.05, 1000)
    b[800:] = np.cos(-2 * np.pi * t[800:] / 40 + 1.0) + rng.normal(0, 0.05, 200)
    rows = np.stack([a, b], axis=1)
    path.write_text("ts,a,b,label\n" + "\n".join(f"{i},{x:.5f},{y:.5f},x" for i, (x, y) in enumerate(rows)) + "\n")
    return rows


def test_windowed_autoencoder_end_to_end(tmp_path: Path) -> None:
    rows = write_machine_csv(tmp_path / "machine.csv")
    out = tmp_path / "models"
    assert main(["autoencoder", "--dataset", f"{tmp_path / 'machine.csv'}:a,b", "--window", "4",
                 "--normal-rows", "800", "--profile", "quick", "--epochs", "40", "--out", str(out),
                 "--report", str(tmp_path / "r")]) == 0
    entry = read_manifest(out / "manifest.json").get("autoencoder")
    assert entry.preprocess["window"] == 4 and entry.preprocess["features"] == ["a", "b"]
    assert entry.inputs[0].shape == (1, 8)
    assert entry.metrics["false_alert_rate_test"] <= 0.05  # the held-out normal slice (rows 640-799)
    assert entry.metrics["detection_rate_after"] >= 0.5  # windows of the abnormal period
    # the edge scores the same windows: nothing until 4 readings, then one score per reading
    scorer = AnomalyScorer(entry, TFLiteModel.from_entry(entry, out))
    rule = AnomalyRule(float(entry.postprocess["threshold"]))
    scores = [scorer.score(r) for r in rows]
    assert scores[:3] == [None, None, None] and all(s is not None for s in scores[3:])
    flagged = np.array([rule.update(s)[0] for s in scores[3:]])
    assert flagged[800 - 3:].mean() > 5 * max(flagged[640 - 3:800 - 3].mean(), 0.01)
