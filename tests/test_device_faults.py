"""What a real Pi meets in its first week, each against a real mosquitto and the agent in a TensorFlow-free
subprocess: a full disk (a small tmpfs, filled and freed), clocks that jump, retained commands, NaN and
Infinity where numbers go, reloads under a stream, a flood of bad input while the broker is away."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.disk import tmpfs
from tests.helpers.mqtt import AgentProcess, Broker, Collector, described, publish, wait_online, write_config
from tests.helpers.series import first_forecast_step, offline_forecasts
from training.datasets.series import load_series

BASE = "edgepipe/test"
SENSOR = '[[sensor]]\nname = "line1"\n'
SERIES = '[[series]]\nname = "airline"\n'


def stats(collector: Collector) -> dict:
    return collector.json("/stats")[-1] if collector.matching("/stats") else {}


# --- a full disk ----------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MiB tmpfs: the state dir of an agent whose SD card fills up (needs root to mount)."""
    mount = tmp_path / "card"
    mount.mkdir()
    with tmpfs(mount, "3m"):
        yield mount


def fill(folder: Path) -> Path:
    """Write a filler file until the file system is full; removing it frees the space."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left for close() to fail on (ENOSPC)
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket that keeps what the agent says."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path, self.said, self.stop = path, [], False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self.stop:
            try:
                self.said.append((time.monotonic(), self.sock.recv(4096).decode()))
            except OSError:
                continue

    def since(self, moment: float) -> list[str]:
        return [text for t, text in list(self.said) if t >= moment]


def test_full_disk_loses_no_alert_reports_unhealthy_and_recovers_by_itself(small_disk: Path, broker: Broker,
                                                                              tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port,
                          SENSOR + "threshold = 1e-12\n",  # every reading is an alert: the expected set is exact
                          state_dir=small_disk, top="stall_after = 2.0\n")
    notify = NotifySocket(tmp_path / "notify.sock")
    env_extra = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    collector = Collector(broker.port, [f"{BASE}/#"], client_id="alerts", clean=False)
    agent = AgentProcess(config, env=env_extra)
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30), agent.output()
        assert collector.wait_for(lambda: any("READY=1" in s for _, s in notify.said), 10)
        readings = [json.dumps({"ts": i, "values": [0.5, 0.1 * (i % 7)]}) for i in range(60)]
        publish(broker.port, f"{BASE}/sensors/line1/reading", readings[:20])
        assert collector.wait_for(lambda: len(collector.matching("/anomaly")) >= 20, 30)
        filler = fill(small_disk)
        full_since = time.monotonic()
        publish(broker.port, f"{BASE}/sensors/line1/reading", readings[20:])
        assert collector.wait_for(lambda: stats(collector).get("healthy") is False, 30), stats(collector)
        assert any("no progress" in p for p in stats(collector)["problems"])
        assert collector.wait_for(lambda: any("unhealthy" in s for s in notify.since(full_since)), 10)
        filler.unlink()
        freed = time.monotonic()
        assert collector.wait_for(lambda: len({json.loads(p)["id"] for p in collector.matching("/anomaly")}) >= 60,
                                  60), (len(collector.matching("/anomaly")), agent.output()[-3000:])
        assert collector.wait_for(lambda: stats(collector).get("healthy") is True, 30)
        assert collector.wait_for(lambda: any("WATCHDOG=1" in s for s in notify.since(freed + 1.5)), 10)
    finally:
        code = agent.stop()
        notify.stop = True
        collector.close()
    alerts = collector.json("/anomaly")
    assert sorted({a["reading_ts"] for a in alerts}) == list(range(60))  # every accepted alert, none lost
    assert len({a["id"] for a in alerts}) == 60
    assert code == 0 and "Traceback" not in agent.output()


# --- clocks that jump -----------------------------------------------------------------------------------------
def test_far_future_timestamp_is_refused_and_a_clock_reset_does_not_stop_the_forecaster(broker: Broker,
                                                                                       tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port, SERIES)
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config)
    values = load_series("airline").values.tolist()
    now = time.time()
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30)
        topic = f"{BASE}/series/airline/reading"
        first = [json.dumps({"ts": now - 3600 * (60 - i), "values": [v]}) for i, v in enumerate(values[:40])]
        publish(broker.port, topic, first)
        publish(broker.port, topic, [json.dumps({"ts": now + 365 * 86400, "values": [values[40]]}),
                                     json.dumps({"ts": float("nan"), "values": [values[40]]}).encode()])
        # the clock is set back by a week (no RTC, NTP late): de-duplication restarts, forecasts go on
        back = [json.dumps({"ts": now - 7 * 86400 + i, "values": [v]}) for i, v in enumerate(values[40:60])]
        publish(broker.port, topic, back)
        n_forecasts = 60 - first_forecast_step()
        assert collector.wait_for(lambda: len(collector.matching("/forecast/airline")) >= n_forecasts, 30), \
            (len(collector.matching("/forecast/airline")), collector.json("/error"))
        assert collector.wait_for(lambda: stats(collector).get("pipelines", {}).get("series/airline", {})
                                  .get("clock_resets") == 1, 10), stats(collector)
    finally:
        agent.stop()
        collector.close()
    reasons = [e["reason"] for e in collector.json("/error")]
    assert any("ahead of the agent's clock" in r for r in reasons), reasons
    forecasts = [m["forecast"] for m in collector.json("/forecast/airline")]
    assert np.allclose(forecasts, offline_forecasts(values[:60]), rtol=1e-5)  # the refused ones changed nothing


# --- reload under a stream --------------------------------------------------------------------------------------
def test_hundred_reloads_under_a_stream_lose_or_repeat_no_step(tmp_path: Path) -> None:
    """On the broker setting docs/testing.md gives a series that must never lose a step: with the shipped
    `max_inflight_messages 100`, mosquitto 2.0.11 can send a QoS 1 reading ahead of the ones queued while
    the reloads keep the agent's window full, and the forecaster then skips it as `late` (reported)."""
    broker = Broker(tmp_path / "broker", extra_conf="max_inflight_messages 1\n").start()
    try:
        _hundred_reloads(broker, tmp_path)
    finally:
        broker.stop()


def _hundred_reloads(broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port, SERIES)
    collector = Collector(broker.port, [f"{BASE}/forecast/#", f"{BASE}/cmd/#", f"{BASE}/status"])
    agent = AgentProcess(config)
    values = load_series("airline").values.tolist()
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30)
        reloads = threading.Thread(target=publish, args=(broker.port, f"{BASE}/cmd/reload",
                                                         [json.dumps({"id": f"r{i}"}) for i in range(100)]))
        reloads.start()
        publish(broker.port, f"{BASE}/series/airline/reading",
                [json.dumps({"ts": i, "values": [v]}) for i, v in enumerate(values)], 1, 0.01)
        reloads.join(60)
        assert not reloads.is_alive()
        assert collector.wait_for(lambda: len(collector.matching("/cmd/reload/result")) == 100, 60)
        want = set(range(first_forecast_step(), len(values)))
        assert collector.wait_for(lambda: len(collector.matching("/forecast/airline")) >= len(want), 30), \
            ("steps missing", sorted(want - {m["step"] for m in collector.json("/forecast/airline")}),
             collector.json("/error"))
    finally:
        agent.stop()
        collector.close()
    assert all(r["ok"] for r in collector.json("/cmd/reload/result"))
    got = collector.json("/forecast/airline")
    assert [m["step"] for m in got] == list(range(first_forecast_step(), len(values)))  # none lost, none twice
    assert np.allclose([m["forecast"] for m in got], offline_forecasts(values), rtol=1e-5)  # never rewound


# --- retained commands, thresholds --------------------------------------------------------------------------------
def test_retained_command_is_ignored_counted_and_reported_once(broker: Broker, tmp_path: Path) -> None:
    publish(broker.port, f"{BASE}/cmd/threshold", [json.dumps({"id": "old", "sensor": "line1", "threshold": 5})],
            retain=True)
    config = write_config(tmp_path / "agent.toml", broker.port, SENSOR)
    collector = Collector(broker.port, [f"{BASE}/#"])
    for _ in range(2):  # and again after a restart: still not run
        collector.sync()  # every message of the agent before has arrived: its last stats are not this one's
        seen = len(collector.matching("/stats"))
        agent = AgentProcess(config)
        wait_online(broker.port)  # a fresh subscriber: the retained status, not the last one this collector saw
        assert collector.wait_for(lambda n=seen: any(s["retained_ignored"] == 1 for s in collector.json("/stats")[n:]),
                                  30), stats(collector)
        assert agent.stop() == 0
    collector.close()
    assert collector.matching("/cmd/threshold/result") == []  # never executed
    assert any("retained" in e["reason"] for e in collector.json("/error"))


def test_threshold_infinity_is_refused_and_a_commanded_one_survives_reload_and_restart(broker: Broker,
                                                                                      tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port, SENSOR)
    collector = Collector(broker.port, [f"{BASE}/#"])
    results = lambda: collector.json("/cmd/threshold/result")  # noqa: E731
    agent = AgentProcess(config)
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30)
        publish(broker.port, f"{BASE}/cmd/threshold", [b'{"id": "a", "sensor": "line1", "threshold": Infinity}',
                                                       b'{"id": "b", "sensor": "line1", "threshold": 0}',
                                                       b'{"id": "c", "sensor": "line1", "threshold": 1e-9}'])
        assert collector.wait_for(lambda: len(results()) == 3, 30)
        assert [r["ok"] for r in results()] == [False, False, True] and results()[2]["persisted"] is True
        publish(broker.port, f"{BASE}/cmd/reload", [b'{"id": "r"}'])
        assert collector.wait_for(lambda: len(collector.matching("/cmd/reload/result")) == 1, 30)
        agent.stop()
        agent = AgentProcess(config)  # restarted: the commanded threshold is still in force
        wait_online(broker.port)  # not the "online" this collector kept from the agent before
        publish(broker.port, f"{BASE}/sensors/line1/reading", [b"[0.5, 0.0]"] * 3)
        assert collector.wait_for(lambda: len(collector.matching("/anomaly")) >= 1, 30)
        assert collector.json("/anomaly")[0]["threshold"] == 1e-9
        publish(broker.port, f"{BASE}/cmd/reset", [b'{"id": "z", "sensor": "line1"}'])
        assert collector.wait_for(lambda: len(collector.matching("/cmd/reset/result")) == 1, 30)
    finally:
        agent.stop()
        collector.close()
    reset = collector.json("/cmd/reset/result")[0]
    assert reset["ok"] and reset["threshold_source"] == "manifest" and reset["threshold"] > 1e-9


# --- a flood of bad input with the broker away ----------------------------------------------------------------
def test_error_flood_neither_evicts_alerts_nor_floods_the_broker(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")  # down while the readings arrive on stdin
    config = write_config(tmp_path / "agent.toml", broker.port,
                          '[[sensor]]\nname = "line1"\nsource = "stdin"\nthreshold = 1e-12\n\n'
                          '[outbox]\nmax_messages = 100\n')
    lines = []
    for i in range(900):
        lines.append("[0.5, 0.1]" if i % 10 == 0 else "[NaN, 1]")  # 90 alerts among 810 bad readings
    agent = AgentProcess(config, "--until-done", stdin=subprocess.PIPE)
    agent.proc.stdin.write(("\n".join(lines) + "\n").encode())
    agent.proc.stdin.close()
    broker.start()
    collector = Collector(broker.port, [f"{BASE}/#"])
    try:
        assert agent.wait(120) == 0
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"offline"], 30)
    finally:
        collector.close()
        broker.stop()
    assert len(collector.matching("/anomaly")) == 90  # every alert: none evicted by the error reports
    errors = collector.json("/error")
    assert len(errors) <= 10 and described(errors, "sensor/line1") <= 810


def test_readings_lost_upstream_are_counted_from_the_senders_seq(broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port, SENSOR)
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config)
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30)
        sent = [json.dumps({"seq": i, "values": [0.5, 0.1]}) for i in range(20) if i not in (3, 7, 8)]
        publish(broker.port, f"{BASE}/sensors/line1/reading", sent)
        assert collector.wait_for(lambda: stats(collector).get("pipelines", {}).get("sensor/line1", {})
                                  .get("processed") == len(sent), 30)
    finally:
        agent.stop()
        collector.close()
    assert stats(collector)["pipelines"]["sensor/line1"]["lost"] == 3
