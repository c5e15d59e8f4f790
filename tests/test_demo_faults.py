"""`make demo` against a broker it cannot use must fail and say why, never print a summary of nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers.isolation import no_tf_env
from tests.helpers.mqtt import Broker, free_port


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.demo", "--quiet", "--duration", "20", *args], cwd=ROOT,
                          env=no_tf_env(), capture_output=True, text=True, timeout=120)


def test_a_broker_that_refuses_the_demo_fails_it_with_the_reason(tmp_path: Path) -> None:
    port = free_port()
    broker = Broker(tmp_path / "broker", listener=f"listener {port} 127.0.0.1\nallow_anonymous false\n")
    broker.port = port
    broker.start()
    try:
        done = run_demo("--broker", "existing", "--port", str(port), "--report", str(tmp_path / "report"))
    finally:
        broker.stop()
    assert done.returncode != 0
    assert "refused the demo's subscriber" in done.stdout + done.stderr, done.stdout + done.stderr
    assert "frames classified" not in done.stdout  # no summary of a run that could not happen


def test_existing_broker_that_is_not_there_is_named(tmp_path: Path) -> None:
    port = free_port()
    done = run_demo("--broker", "existing", "--port", str(port), "--report", str(tmp_path / "report"))
    assert done.returncode != 0
    assert f"--broker existing: nothing listens on localhost:{port}" in done.stderr, done.stderr


def test_a_summary_that_shows_a_broken_chain_fails_the_demo() -> None:
    from tools.demo import failures

    working = {"frames_classified": 280, "segments_detected": 4, "forecasts": 119}
    assert failures(working) == []
    assert failures({**working, "frames_classified": 0}) == ["no frame was classified (see the log above)"]
    assert len(failures({"frames_classified": 0, "segments_detected": 0, "forecasts": 0})) == 3


def test_the_update_demo_promotes_one_update_and_rolls_back_the_loud_one() -> None:
    """`make demo-update` as a user runs it (it crashed on the HA entity's payload once, every run)."""
    done = subprocess.run([sys.executable, "-m", "tools.demo_update", "--broker", "mosquitto", "--probation", "8"],
                          cwd=ROOT, env=no_tf_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "model/sensor/line1: version v2 active" in done.stdout
    assert "model/sensor/line1: version v2 rolled_back -- sensor/line1: alert_rate" in done.stdout
    assert "update promoted, bad update rolled back by itself" in done.stdout
