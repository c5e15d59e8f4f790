"""Two agents with one device id, hence one client id, on a real mosquitto: each CONNECT closes the other's
connection, for ever. Before, both logged an ordinary reconnect each time, backed off from `reconnect_min`
again after every (short) connection, and their stats said nothing. Now each says in one sentence what is
going on, in its log and its stats' `problems`, and the one left alone recovers by itself.

mosquitto 2.0.11 closes the older connection without the MQTT 5 DISCONNECT 0x8E ("session taken over"),
so on both protocols the run of connections closed right after connecting is what is detected here; the
0x8E path (a broker that sends it) is checked on the watch itself with paho's own reason code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge.mqtt.takeover import TakeoverWatch
from tests.helpers.mqtt import AgentProcess, Broker, wait_for_stats, write_config

SENTENCE = "another client uses client id 'edgepipe-twin': two devices with the same device_id?"


def twin(folder: Path, broker: Broker, protocol: str) -> tuple[AgentProcess, Path]:
    folder.mkdir()
    stats = folder / "stats.json"
    config = write_config(folder / "agent.toml", broker.port, "", device="twin", stats_file=stats)
    config.write_text(config.read_text().replace("[mqtt]\n", f'[mqtt]\nprotocol = "{protocol}"\n'))
    return AgentProcess(config), stats


def taken_over(stats: dict) -> bool:
    return any(SENTENCE in p for p in stats["problems"]) and stats["mqtt_takeovers"] >= 1


@pytest.mark.parametrize("protocol", ["3.1.1"])  # "5" passes too (18 s more): mosquitto 2.0.11 sends no 0x8E
def test_two_agents_with_one_client_id_say_so_and_the_survivor_recovers(broker: Broker, tmp_path: Path,
                                                                         protocol: str) -> None:
    first, first_stats = twin(tmp_path / "a", broker, protocol)
    assert wait_for_stats(first_stats, lambda s: s["connected"], 60), first.output()
    second, second_stats = twin(tmp_path / "b", broker, protocol)
    try:
        for agent, stats in ((first, first_stats), (second, second_stats)):
            assert wait_for_stats(stats, taken_over, 60), agent.output()
    finally:
        assert second.stop() == 0
    # alone again: connected, and the problem clears once the connection has held (reconnect_max + 5 s)
    assert wait_for_stats(first_stats, lambda s: s["connected"] and s["problems"] == [], 60), first.output()
    stats = json.loads(first_stats.read_text())
    assert first.stop() == 0
    log = first.output()
    # one sentence per episode (three short connections at least), not one per reconnect
    assert 1 <= 3 * log.count(SENTENCE) <= log.count("MQTT disconnected"), log
    assert "Traceback" not in log and stats["healthy"]


def test_a_session_taken_over_disconnect_is_proof_at_once() -> None:
    watch = TakeoverWatch("edgepipe-twin", reconnect_max=2.0)
    watch.connected()
    assert watch.dropped(ReasonCode(PacketTypes.DISCONNECT, "Session taken over"))  # keep the backoff growing
    assert SENTENCE in (watch.problem() or "") and watch.takeovers == 1
    watch.connected()
    assert watch.dropped(ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"))  # short: still suspicious
    assert watch.problem() is not None  # cleared only by a connection that holds, not by a reconnect


def test_a_lone_short_connection_is_not_called_a_takeover() -> None:
    watch = TakeoverWatch("edgepipe-solo", reconnect_max=2.0)
    for _ in range(2):  # a broker restart or two right after connecting: not yet a pattern
        watch.connected()
        watch.dropped(ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"))
    assert watch.problem() is None and watch.takeovers == 0


def test_a_broker_that_dies_again_and_again_is_not_called_a_takeover() -> None:
    """A crash-looping first broker closes connections soon after accepting them too; but then the next connect
    to it fails (the link's `_connect_failed` says so). Three short drops each followed by a failed connect: no
    takeover; three in a row with every reconnect accepted (two devices, one id): a takeover."""
    flapping, twins = TakeoverWatch("edgepipe-flap", reconnect_max=2.0), TakeoverWatch("edgepipe-twin", 2.0)
    for _ in range(4):
        for watch in (flapping, twins):
            watch.connected()
            watch.dropped(ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"))
        flapping.unreachable()  # the dead broker refuses the reconnect; the failover broker is the next connect
    assert flapping.problem() is None and flapping.takeovers == 0
    assert SENTENCE in (twins.problem() or "") and twins.takeovers >= 1
