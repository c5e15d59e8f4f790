"""`make demo`'s program with a short duration: real figures, a complete report, nothing left running."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from tests.conftest import MODELS_DIR, ROOT, requires_package
from tests.helpers.isolation import no_tf_env
from tests.helpers.series import first_forecast_step, offline_forecasts
from tests.test_model_oracles import SHIPPED_TARGET
from training.quality.evaluation import classify

PNG = b"\x89PNG\r\n\x1a\n"


def run_demo(tmp_path: Path, broker: str, *extra: str) -> tuple[dict, Path, str]:
    summary = tmp_path / "summary.json"
    report = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--broker", broker, "--speed", "3", "--duration", "90", "--quiet",
         "--report", str(report), "--summary-json", str(summary), *extra],
        env=no_tf_env(), cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(summary.read_text()), report, result.stdout


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def assert_flags_inside_not_outside(summary: dict) -> None:
    """Most readings in the injected segments are flagged, almost none outside them. `false_alerts`
    alone would pass an always-on detector (one transition, at seq 0); this would not."""
    rows = json.loads((ROOT / "data" / "sensor-stream.segments.json").read_text())["rows"]
    inside = sum(s["end"] - s["start"] for s in summary["segments"])
    assert summary["flagged_in_segments"] + summary["flagged_outside_segments"] == summary["anomaly_readings_flagged"]
    assert summary["flagged_in_segments"] >= 0.5 * inside, summary
    assert summary["flagged_outside_segments"] <= 0.02 * (rows - inside), summary


def leftover_brokers() -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if "mosquitto" in line and "edgepipe-demo-" in line]


@requires_package("mosquitto")
def test_demo_with_its_own_mosquitto(tmp_path: Path) -> None:
    # --every-frame: the replay waits for the model, so what is counted does not depend on the machine's
    # load (a live camera's skipping showed as 243 < 250 classified frames with the load average at 12)
    summary, report, stdout = run_demo(tmp_path, "mosquitto", "--every-frame")
    assert "MQTT broker: mosquitto started on 127.0.0.1:" in stdout
    assert "=== edgepipe demo: summary ===" in stdout
    # every injected segment flagged
    assert summary["segments_detected"] == len(summary["segments"]) == 4
    assert summary["false_alerts"] <= 2
    assert_flags_inside_not_outside(summary)
    # the frames' accuracy is the int8 model's on those frames (computed offline, within a point)
    with np.load(ROOT / "data" / "sample-frames.npz") as data:
        frames, labels = data["frames"], data["labels"]
    entry = read_manifest(MODELS_DIR / "manifest.json").get("cnn")
    offline = np.mean(np.argmax(classify(TFLiteModel.from_entry(entry, MODELS_DIR), entry, frames), 1) == labels)
    # every frame is classified (none skipped: the replay waited), and the summary says so
    assert summary["frames_sent"] == summary["frames_classified"] == len(frames)
    assert summary["frames_dropped"] == 0
    assert f"frames classified: {len(frames)} of {len(frames)}," in stdout
    assert "none skipped: the model kept up with the camera" in stdout
    assert abs(summary["frame_accuracy"] - offline) <= 0.01
    assert summary["frame_accuracy"] >= SHIPPED_TARGET  # and it is good: random weights would match offline too
    # the forecast RMSE is the offline step model's on the same months
    series = [float(line.split(",")[1]) for line in (ROOT / "data" / "airline-passengers.csv").read_text().split()[1:]]
    first = first_forecast_step()
    forecasts = offline_forecasts(series)  # made after reading `first` and later, each for the next month
    expected = float(np.sqrt(np.mean((np.array(forecasts[:-1]) - np.array(series[first + 1:])) ** 2)))
    assert summary["forecasts"] == len(series) - first
    assert summary["forecast_rmse"] == pytest.approx(expected, rel=1e-3)
    months = np.arange(first + 1, len(series))  # ... and it beats the naive growth forecast on the same months
    y = np.array(series)
    growth = float(np.sqrt(np.mean((y[months - 1] * y[months - 12] / y[months - 13] - y[months]) ** 2)))
    assert summary["forecast_rmse"] < growth, (summary["forecast_rmse"], growth)
    # the report shows every plot
    parser = Images()
    parser.feed((report / "index.html").read_text())
    assert sorted(parser.sources) == ["forecast.png", "frames.png", "gan.png", "sensor.png"]
    assert all((report / src).read_bytes()[:8] == PNG for src in parser.sources)
    assert leftover_brokers() == []


def test_demo_with_the_embedded_broker(tmp_path: Path) -> None:
    pytest.importorskip("amqtt", reason="the embedded broker needs amqtt (the demo extra installs it)")
    summary, _, stdout = run_demo(tmp_path, "embedded")
    assert "an embedded amqtt broker" in stdout
    assert summary["segments_detected"] == 4 and summary["forecasts"] == 144 - first_forecast_step()
    assert_flags_inside_not_outside(summary)
