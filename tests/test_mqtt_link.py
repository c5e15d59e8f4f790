"""The MQTT link on its own against a real mosquitto: several threads write to one socket.

The link writes each message from the thread that made it (see edge/mqtt.py), so the camera's
publishing thread, the outbox thread and the network thread all write to the same socket,
under one lock. A test cannot force the race that lock prevents (a second writer in the very
microseconds of another's partial write), so this one holds the link to what it must give:
with eight writers and payloads large enough that many writes go out in parts (finished by the
network thread), every message arrives whole, in its writer's order, on the one connection
(a corrupted packet makes the broker drop it), and every alert's PUBACK empties the outbox.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edge.mqtt.config import MqttConfig
from edge.mqtt.link import MqttLink
from edge.mqtt.messages import Message, Topics
from edge.mqtt.outbox import Outbox
from tests.conftest import requires_package
from tests.helpers.mqtt import Broker, Collector, free_port
from tests.helpers.threads import CheckedThread

WRITERS, PER_WRITER, ALERTS = 8, 60, 200


def payload(writer: int, i: int) -> bytes:
    rng = np.random.default_rng(writer * 100_000 + i)
    size = 300_000 if i % 3 == 1 else int(rng.integers(1, 3000))  # a few large enough to write in parts
    return f"{writer}:{i}:".encode() + rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def test_many_writer_threads_share_one_connection_without_corrupting_it(broker: Broker, tmp_path: Path) -> None:
    collector = Collector(broker.port, ["unit/#"])
    outbox = Outbox(tmp_path / "outbox.sqlite")
    link = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min=1, reconnect_max=2), "unit",
                    Topics("unit"), outbox)
    link.start()
    try:
        assert link.connected.wait(10)

        def qos0_writer(writer: int) -> None:
            for i in range(PER_WRITER):
                link.send(Message(f"unit/w{writer}", payload(writer, i), qos=0))

        def qos1_writer() -> None:
            for i in range(ALERTS):
                link.send(Message("unit/alerts", f"alert {i}".encode(), qos=1))

        threads = [CheckedThread(qos0_writer, w) for w in range(WRITERS)]
        threads.append(CheckedThread(qos1_writer))
        for t in threads:
            t.start()
        for t in threads:
            t.join_checked(120)  # a writer that raised or hung fails here, naming itself
        expected = WRITERS * PER_WRITER + ALERTS  # the link's own `unit/status` is not counted

        def arrived() -> int:
            return sum(topic != "unit/status" for topic, _, _ in collector.messages)

        assert collector.wait_for(lambda: arrived() >= expected, timeout=120), f"{arrived()} of {expected} arrived"
        assert link.wait_until_flushed(10) and len(outbox) == 0  # every alert's PUBACK was read and applied

        assert link.connects == 1, "the broker dropped the connection: a packet was written corrupted"
        assert link.dropped_qos0 == 0
        for writer in range(WRITERS):  # every QoS 0 message, whole, and in its writer's order
            got = collector.matching(f"unit/w{writer}")
            assert got == [payload(writer, i) for i in range(PER_WRITER)]
        assert collector.matching("unit/alerts") == [f"alert {i}".encode() for i in range(ALERTS)]
    finally:
        link.stop()
        collector.close()
        outbox.close()


@requires_package("mosquitto")
def test_collector_fails_at_once_with_the_reason_when_the_broker_refuses_it(tmp_path: Path) -> None:
    """A credential mistake is a ConnectionRefusedError naming the broker's reason, not a 10-30 s
    "never arrived" timeout (the constructor's own wait for SUBACK would raise TimeoutError)."""
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "watcher", "right"], check=True, capture_output=True)
    port = free_port()
    broker = Broker(tmp_path / "broker", listener=f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                                                  f"password_file {passwd}\n")
    broker.port = port
    broker.start()
    try:
        with pytest.raises(ConnectionRefusedError, match="refused the connection: Not authorized"):
            Collector(port, ["#"], username="watcher", password="wrong")
        Collector(port, ["#"], username="watcher", password="right").close()  # the same broker takes the right one
    finally:
        broker.stop()


def test_a_helper_thread_that_fails_or_hangs_fails_the_test() -> None:
    def boom() -> None:
        raise ValueError("feeder lost a reading")

    failing = CheckedThread(boom)
    failing.start()
    with pytest.raises(AssertionError, match="feeder lost a reading"):
        failing.join_checked(10)
    hanging = CheckedThread(time.sleep, 5)
    hanging.start()
    with pytest.raises(TimeoutError, match="still running"):
        hanging.join_checked(0.01)
    fine = CheckedThread(sum, [1, 2])
    fine.start()
    fine.join_checked(10)
