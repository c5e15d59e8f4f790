"""Delivery promises tested at the moment that needs them: the replay window after a broker that forgot what it
acknowledged, the outbox holding alerts through an outage and a clean stop, a reading queue that overflows, and
a persistent session over MQTT 5. Each test fails when its safeguard is removed (docs/testing.md)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_for_stats, write_config

BASE = "edgepipe/test"
ALERTING = '[[sensor]]\nname = "line1"\nthreshold = 1e-12\n'  # every reading is an alert: the set is exact


def readings(start: int, count: int) -> list[str]:
    return [json.dumps({"ts": i, "values": [0.5, 0.25]}) for i in range(start, start + count)]


def alert_ts(collector: Collector) -> set[int]:
    return {m["reading_ts"] for m in collector.json("/anomaly")}


def test_alerts_a_crashed_broker_forgot_are_sent_again_from_the_replay_window(tmp_path: Path) -> None:
    """The broker PUBACKs 20 alerts and queues them for an offline subscriber, in memory only; SIGKILLed,
    it restarts without them. Only the agent's replay window brings them back -- every time, not by luck."""
    broker = Broker(tmp_path / "broker", save_every_change=False).start()
    stats_file = tmp_path / "stats.json"
    watcher = Collector(broker.port, [f"{BASE}/sensors/+/anomaly"], client_id="watcher", clean=False)
    watcher.close()  # its persistent session (the subscription) ...
    broker.restart()  # ... saved by a clean stop; from here on the broker saves nothing until it stops cleanly
    config = write_config(tmp_path / "agent.toml", broker.port, ALERTING, stats_file=stats_file)
    agent = AgentProcess(config)
    try:
        assert wait_for_stats(stats_file, lambda s: s["connected"], 30), agent.output()
        publish(broker.port, f"{BASE}/sensors/line1/reading", readings(0, 20))
        assert wait_for_stats(stats_file, lambda s: s["pipelines"]["sensor/line1"]["published"] == 20
                              and s["outbox_depth"] == 0, 30)  # all 20 acknowledged by the broker
        broker.stop(kill=True)  # it forgets the 20 it queued for the watcher
        broker.start()
        assert wait_for_stats(stats_file, lambda s: s["connects"] >= 2 and s["outbox_depth"] == 0, 30)
        watcher = Collector(broker.port, [f"{BASE}/sensors/+/anomaly"], client_id="watcher", clean=False)
        assert watcher.wait_for(lambda: alert_ts(watcher) == set(range(20)), 15), (alert_ts(watcher),
                                                                                    agent.output()[-2000:])
        watcher.close()
    finally:
        agent.stop()
        broker.stop()
    assert "re-sending 20 message(s)" in agent.output()


def test_outbox_holds_the_alerts_through_an_outage_and_a_clean_stop(tmp_path: Path) -> None:
    """With the broker away the alerts wait in the outbox (its depth is seen in the stats file), a clean stop
    keeps them, and the next start delivers every one."""
    broker = Broker(tmp_path / "broker")  # not started yet
    stats_file = tmp_path / "stats.json"
    csv = tmp_path / "line.csv"
    csv.write_text("x,y\n" + "".join("0.5,0.25\n" for _ in range(30)))
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\nrate = 0\nthreshold = 1e-12\n',
                          stats_file=stats_file)
    agent = AgentProcess(config)
    assert wait_for_stats(stats_file, lambda s: s["outbox_depth"] == 30 and not s["connected"], 30), agent.output()
    assert agent.stop(signal.SIGTERM) == 0  # a clean stop with the broker down
    assert "30 message(s) left in the outbox" in agent.output()
    broker.start()
    collector = Collector(broker.port, [f"{BASE}/sensors/+/anomaly"])
    # the next start (same state dir) takes its readings from MQTT: what arrives is the outbox's alone
    agent = AgentProcess(write_config(tmp_path / "again.toml", broker.port, ALERTING))
    try:
        assert collector.wait_for(lambda: len(collector.matching("/anomaly")) >= 30, 30), agent.output()
    finally:
        agent.stop()
        collector.close()
        broker.stop()
    assert sorted(m["seq"] for m in collector.json("/anomaly")) == list(range(30))


def test_a_reading_queue_that_overflows_counts_what_gave_way(broker: Broker, tmp_path: Path) -> None:
    """`queue_size = 1` and a burst: the oldest waiting readings give way, and each is counted as dropped, so
    received = processed + dropped (nothing vanishes uncounted)."""
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port, ALERTING, stats_file=stats_file,
                          top="queue_size = 1\n")
    agent = AgentProcess(config)
    sender = paho.Client(CallbackAPIVersion.VERSION2)
    try:
        assert wait_for_stats(stats_file, lambda s: s["connected"], 30), agent.output()
        sender.connect("127.0.0.1", broker.port)
        sender.loop_start()
        infos = [sender.publish(f"{BASE}/sensors/line1/reading", r, qos=0) for r in readings(0, 2000)]
        for info in infos:
            info.wait_for_publish(10)

        def settled(s: dict) -> bool:
            p = s["pipelines"]["sensor/line1"]
            return p["received"] == 2000 and p["processed"] + p["dropped"] == 2000

        assert wait_for_stats(stats_file, settled, 60), stats_file.read_text()
    finally:
        sender.disconnect()
        sender.loop_stop()
        agent.stop()
    counters = json.loads(stats_file.read_text())["pipelines"]["sensor/line1"]
    assert counters["dropped"] > 0 and counters["processed"] == counters["published"]


def test_mqtt5_persistent_session_keeps_readings_while_the_agent_is_away(broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port, ALERTING)
    config.write_text(config.read_text().replace("[mqtt]\n", '[mqtt]\nprotocol = "5"\n'))
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config)
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30)
        assert agent.stop() == 0
        publish(broker.port, f"{BASE}/sensors/line1/reading", readings(0, 10))  # nobody is listening ...
        agent = AgentProcess(config)  # ... but the broker kept them for the agent's session
        assert collector.wait_for(lambda: alert_ts(collector) >= set(range(10)), 30), agent.output()
    finally:
        agent.stop()
        collector.close()


def test_readings_delivered_again_after_a_reconnect_are_not_scored_twice(tmp_path: Path) -> None:
    """Readings reach the agent while it is frozen (SIGSTOP), so none is acknowledged; the broker restarts
    meanwhile (a clean stop keeps the agent's session and those readings). Thawed, the agent handles what its
    socket still held, then the broker delivers the same readings again on the new connection, as QoS 1
    must. Each is scored once: 20 readings, 20 alerts (every reading alerts), the repeats counted as
    `duplicates` -- the sensor scored them twice before (a shifted window, a second alert for each)."""
    broker = Broker(tmp_path / "broker").start()
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port, ALERTING, stats_file=stats_file)
    agent = AgentProcess(config)
    watcher = Collector(broker.port, [f"{BASE}/sensors/+/anomaly"], client_id="watcher", clean=False)
    try:
        assert wait_for_stats(stats_file, lambda s: s["connected"], 30), agent.output()
        agent.proc.send_signal(signal.SIGSTOP)
        publish(broker.port, f"{BASE}/sensors/line1/reading", readings(0, 20))
        watcher.close()
        broker.restart()
        watcher = Collector(broker.port, [f"{BASE}/sensors/+/anomaly"], client_id="watcher", clean=False)
        agent.proc.send_signal(signal.SIGCONT)
        assert wait_for_stats(stats_file, lambda s: s["connects"] >= 2 and s["outbox_depth"] == 0
                              and s["pipelines"]["sensor/line1"]["processed"] >= 20, 60), agent.output()[-2000:]
        assert watcher.wait_for(lambda: alert_ts(watcher) == set(range(20)), 30), alert_ts(watcher)
        watcher.sync()
        counters = json.loads(stats_file.read_text())["pipelines"]["sensor/line1"]
        ids: dict[int, set[str]] = {}
        for m in watcher.json("/anomaly"):  # a message may come twice (the replay window): the same id
            ids.setdefault(m["reading_ts"], set()).add(m["id"])
        assert {ts: len(v) for ts, v in ids.items()} == dict.fromkeys(range(20), 1), (ids, counters)  # one alert each
        assert counters["received"] > 20 and counters["duplicates"] == counters["received"] - 20, counters
    finally:
        agent.proc.send_signal(signal.SIGCONT)
        agent.stop()
        watcher.close()
        broker.stop()


def test_a_topic_no_broker_takes_is_dropped_with_a_reason_and_the_queue_goes_on(tmp_path: Path) -> None:
    """A damaged `discovery.json` named `homeassistant/#` and another device's `status`: clearing them put a
    wildcard topic into the outbox, paho refused it, the outbox thread died, and no alert or command result went
    out again -- at every start. Now: only this agent's own discovery config topics are cleared (the rest named in
    the log), a wildcard topic is refused at the outbox (counted as dropped), and one stored by an older agent is
    dropped at publish with its reason while the messages behind it go."""
    from edge.fileio import StateFile
    from edge.mqtt.outbox import Outbox

    broker = Broker(tmp_path / "broker").start()
    state = tmp_path / "state"
    state.mkdir()
    old_config = "homeassistant/binary_sensor/edgepipe_test/gone_anomaly/config"
    StateFile(state / "discovery.json", "").save({"v": 1, "topics": ["homeassistant/#", "edgepipe/other/status",
                                                                     old_config]})
    box = Outbox(state / "outbox.sqlite")  # an outbox an older agent left: a wildcard message, then a good one
    box._db.execute("INSERT INTO outbox (topic, payload, retain, created, diagnostic) VALUES (?, ?, 0, 0, 0)",
                    ("edgepipe/test/+/bad", b"x"))
    box.put("edgepipe/test/left/behind", b"still delivered")
    box.close()
    publish(broker.port, "edgepipe/other/status", [b"online"], retain=True)
    publish(broker.port, old_config, [b"{}"], retain=True)
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port, ALERTING, stats_file=stats_file, state_dir=state)
    watcher = Collector(broker.port, ["edgepipe/#", "homeassistant/#"])
    agent = AgentProcess(config)
    try:
        assert watcher.wait_for(lambda: watcher.matching("/left/behind") == [b"still delivered"], 30), agent.output()
        publish(broker.port, f"{BASE}/sensors/line1/reading", readings(0, 3))
        assert watcher.wait_for(lambda: alert_ts(watcher) == {0, 1, 2}, 30), agent.output()[-3000:]
        assert watcher.wait_for(lambda: watcher.matching(old_config)[-1:] == [b""], 10)  # its own stale entity: gone
        assert wait_for_stats(stats_file, lambda s: s["healthy"] and s["outbox_dropped"] == 1, 30), \
            stats_file.read_text()
    finally:
        agent.stop()
        watcher.close()
        broker.stop()
    assert watcher.matching("/other/status") == [b"online"]  # another device's status: left alone
    log = agent.output()
    assert "'homeassistant/#', 'edgepipe/other/status'" in log and "that no broker takes" in log
    assert "Traceback" not in log
