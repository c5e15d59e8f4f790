"""Issue 27: the two shapes of stream that gave no working detector, trained through the CLI and run by a
real agent as a user runs them.

- A smooth stream: its held-out slice spans a sliver of the training range, and the export's parity
  bound, relative to that range, fell below the file's quantization step: the CLI refused to export.
- A flat line: every score 0, the trainer wrote threshold 0.0 and exited 0, and the agent refused to start.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.mqtt import AgentProcess, Broker, write_config
from training.cli import main

START = datetime.datetime(2024, 3, 4)
ROWS = 600


def write_stream(path: Path, values: np.ndarray) -> Path:
    stamps = [(START + datetime.timedelta(minutes=5 * i)).isoformat(sep=" ") for i in range(len(values))]
    path.write_text("timestamp,value\n" + "\n".join(f"{s},{v:.6f}" for s, v in zip(stamps, values)) + "\n")
    return path


def train(tmp_path: Path, csv: Path) -> dict:
    """The CLI as a user runs it (a fixed window and few epochs keep it to seconds); the manifest entry."""
    out = tmp_path / "models"
    assert main(["autoencoder", "--dataset", str(csv), "--profile", "quick", "--window", "4", "--epochs", "3",
                 "--out", str(out), "--report", str(tmp_path / "r")]) == 0
    return json.loads((out / "manifest.json").read_text())["models"]["autoencoder"]


def replay(broker: Broker, tmp_path: Path, csv: Path) -> dict:
    """Every row of `csv` through a real agent on the trained models; its final stats for the sensor."""
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\nrate = 0\n',
                          models_dir=tmp_path / "models", stats_file=stats_file)
    agent = AgentProcess(config, "--until-done")
    assert agent.wait(120) == 0, agent.output()
    stats = json.loads(stats_file.read_text())
    return stats["quality"]["sensor/line1"]


@pytest.mark.slow
def test_a_smooth_stream_exports_and_runs(broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    t = np.arange(ROWS)
    csv = write_stream(tmp_path / "smooth.csv", 50 + 0.01 * np.sin(2 * np.pi * t / 2000))
    entry = train(tmp_path, csv)
    # 120 held-out readings (0.42 days) cannot place a 0.1/day rule: printed, and kept in the manifest
    printed = capsys.readouterr().out
    assert "WARNING: calibration too short" in printed and "out of sample" in printed
    support = entry["postprocess"]["alerts"]["support"]
    assert support["supported_false_alarms_per_day"] == pytest.approx(1 / support["calibration_days"])
    assert support["supported_false_alarms_per_day"] > 2
    assert "cross-fit" in entry["metrics"]["heldout_method"]
    parity = entry["export"]["parity"]
    assert parity["reconstruction_range"] < 0.3 < parity["reconstruction_parity_range"]  # the floor did it
    quality = replay(broker, tmp_path, csv)
    assert quality["readings"] == ROWS - 3 and quality["threshold_source"] == "manifest"


@pytest.mark.slow
def test_a_flat_line_gets_a_positive_threshold_and_alerts_on_a_step(broker: Broker, tmp_path: Path) -> None:
    entry = train(tmp_path, write_stream(tmp_path / "flat.csv", np.full(ROWS, 5.0)))
    alerts = entry["postprocess"]["alerts"]
    assert alerts["method"] == "floor" and alerts["threshold"] > 0
    assert alerts["episode"]["likelihood"]["min_history"] == 288  # the episode rule: a day of history first
    step = write_stream(tmp_path / "step.csv", np.concatenate([np.full(400, 5.0), np.full(20, 5.5)]))
    quality = replay(broker, tmp_path, step)
    assert quality["readings"] == 417 and quality["alert_episodes"] == 1 and quality["rule"] == "episode"
