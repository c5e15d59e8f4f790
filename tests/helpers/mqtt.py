"""Real MQTT for tests: a mosquitto (or a NATS cluster, or a bridged pair) the test starts, stops and kills on
free loopback ports, a collecting subscriber, and the agent as a subprocess on a Pi-like Python (no TensorFlow)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import MODELS_DIR, ROOT, skip_without
from tests.helpers.isolation import no_tf_env
from tools.broker import BridgedPair, Mosquitto, NatsCluster, free_port, wait_port

__all__ = ["AgentProcess", "acknowledged", "Bridged", "Broker", "Cluster", "Collector", "described", "free_port",
           "publish", "sensor_csv", "wait_for_stats", "wait_online", "wait_port", "write_config"]


class Broker(Mosquitto):
    """The repository's one mosquitto launcher (tools/broker.py); without the package the test skips naming it."""

    def __init__(self, workdir: Path, *args: Any, **kwargs: Any) -> None:
        skip_without("mosquitto")  # every broker test, fixture or not, skips naming the package
        super().__init__(workdir, *args, **kwargs)


class Cluster(NatsCluster):
    """The launcher's three-node NATS cluster (JetStream, MQTT on each node); skips naming nats-server."""

    def __init__(self, workdir: Path, *args: Any, **kwargs: Any) -> None:
        skip_without("nats-server")
        super().__init__(workdir, *args, **kwargs)


class Bridged(BridgedPair):
    """The launcher's Pi-local mosquitto bridged to a central one (deploy/mosquitto/bridge.conf)."""

    def __init__(self, workdir: Path, *args: Any, **kwargs: Any) -> None:
        skip_without("mosquitto")
        super().__init__(workdir, *args, **kwargs)


SYNC_PREFIX = "edgepipe-test-sync/"


class Collector:
    """A subscriber that keeps every message (topic, payload bytes, retain) it receives.

    The constructor returns once the broker has acknowledged every subscription (SUBACK), so a
    message published afterwards is seen. A refused connection (a CONNACK with a failure reason: bad
    credentials, not authorised) or a refused subscription raises at once, naming the reason --
    in the constructor, or in `wait_for` if it happens on a reconnect -- instead of surfacing as a
    30-second "never arrived".
    """

    def __init__(self, port: int, topics: list[str], client_id: str = "", clean: bool = True,
                 username: str | None = None, password: str | None = None, tls_ca: Path | None = None,
                 retry_refused: int = 0) -> None:
        """`retry_refused`: subscribe again this many times to a topic the broker refused before giving up (on
        NATS a QoS 1 subscription is a JetStream consumer whose creation can time out on a busy cluster)."""
        self.retries_left = retry_refused
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.refused: str | None = None
        self._topics = topics
        self._pending: dict[int, str] = {}  # SUBSCRIBE mid -> topic
        self._markers: set[str] = set()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            raise TimeoutError(f"collector: no SUBACK for {topics} within 10 s (connected: {self.connected.is_set()})")
        if self.refused:
            self.close()
            raise ConnectionRefusedError(self.refused)

    def _refuse(self, reason: str) -> None:
        with self.cond:
            self.refused = reason
            self.cond.notify_all()
        self.subscribed.set()  # wakes the constructor, which raises

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._refuse(f"collector: the broker refused the connection: {reason}")
            client.disconnect()  # no reconnect loop against a broker that says no
            return
        self.connected.set()
        with self.cond:
            self._pending = {client.subscribe(t, qos=1)[1]: t for t in self._topics}

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list, properties: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed and self.retries_left > 0:
            self.retries_left -= 1
            with self.cond:
                topic = self._pending.pop(mid, None)
                if topic is not None:
                    self._pending[client.subscribe(topic, qos=1)[1]] = topic
            return
        if failed:
            self._refuse(f"collector: the broker refused a subscription to {self._topics}: {failed}")
            return
        with self.cond:
            self._pending.pop(mid, None)
            done = not self._pending
        if done:
            self.subscribed.set()

    def sync(self, timeout: float = 10.0) -> None:
        """Until everything the broker queued for this subscriber before now has arrived (the retained
        messages of its subscriptions, say): a marker this client publishes comes back after them, since
        the broker handles one client's packets in order. An event where a sleep would guess; the
        marker is not kept in `messages`."""
        marker = f"{SYNC_PREFIX}{uuid.uuid4().hex}"
        self.client.subscribe(marker, qos=1)
        self.client.publish(marker, b"", qos=1)
        with self.cond:
            if not self.cond.wait_for(lambda: marker in self._markers, timeout):
                raise TimeoutError(f"collector: sync marker not back within {timeout} s")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.cond:
            if msg.topic.startswith(SYNC_PREFIX):
                self._markers.add(msg.topic)
                self.cond.notify_all()
                return
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self.cond.notify_all()

    def matching(self, suffix: str) -> list[bytes]:
        with self.cond:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def json(self, suffix: str) -> list[dict]:
        return [json.loads(p) for p in self.matching(suffix)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Until `predicate()` holds (True) or `timeout` (False); a refused (re)connection raises at once."""
        with self.cond:
            met = self.cond.wait_for(lambda: self.refused is not None or predicate(), timeout)
            if self.refused is not None:
                raise ConnectionRefusedError(self.refused)
            return bool(met)

    def close(self) -> None:
        self.client.disconnect()  # first: it wakes the network thread, which then ends (see `publish`)
        self.client.loop_stop()


def publish(port: int, topic: str, payloads: list[bytes | str], qos: int = 1, delay: float = 0.0,
            retain: bool = False, username: str | None = None, password: str | None = None) -> None:
    """Publish and wait until every message is acknowledged."""
    client = paho.Client(CallbackAPIVersion.VERSION2)
    if username:
        client.username_pw_set(username, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for payload in payloads:
            info = client.publish(topic, payload, qos=qos, retain=retain)
            if qos:
                acknowledged(info, 10)
            else:
                info.wait_for_publish(10)
            if delay:
                time.sleep(delay)
    finally:
        # disconnect first: the DISCONNECT wakes paho's network thread, which then ends at once; the other
        # order leaves loop_stop() joining a thread asleep in a 1-second select (a second per call)
        client.disconnect()
        client.loop_stop()


def acknowledged(info: paho.MQTTMessageInfo, timeout: float) -> None:
    """Wait for a QoS 1 publish's PUBACK; a timeout raises (paho's `wait_for_publish` returns quietly)."""
    info.wait_for_publish(timeout)
    if not info.is_published():
        raise TimeoutError(f"publish (mid {info.mid}) not acknowledged within {timeout} s")


def write_config(path: Path, port: int, body: str, device: str = "test", state_dir: Path | None = None,
                 models_dir: Path | None = None, stats_interval: float = 1.0, stats_file: Path | None = None,
                 top: str = "") -> Path:
    """An agent config for a test broker; `top` holds extra top-level keys, `body` the tables after [mqtt]."""
    state = state_dir or path.parent / "state"
    path.write_text(
        top + (f'stats_file = "{stats_file}"\n' if stats_file else "")
        + f'device_id = "{device}"\nmodels_dir = "{models_dir or MODELS_DIR}"\nstate_dir = "{state}"\n'
        f'stats_interval = {stats_interval}\n\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nreconnect_min = 1\n'
        'reconnect_max = 2\n\n' + body)
    return path


def sensor_csv(path: Path, rows: Any) -> Path:
    """Two-column sensor readings as a CSV file with an x,y header (a `csv:` source)."""
    path.write_text("x,y\n" + "\n".join(f"{x},{y}" for x, y in rows) + "\n")
    return path


class AgentProcess:
    """`python -m edge run` in a subprocess where TensorFlow, Keras and scikit-learn cannot be imported."""

    started: list[AgentProcess] = []

    @classmethod
    def kill_all(cls) -> None:
        for agent in cls.started:
            if agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait(10)
        cls.started.clear()

    def __init__(self, config: Path, *extra: str, stdin: Any = None, env: dict[str, str] | None = None) -> None:
        self.log_path = config.with_suffix(".log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config), *extra],
                                     env={**no_tf_env(), **(env or {})}, cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     stdin=stdin)
        AgentProcess.started.append(self)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def described(errors: list[dict], component: str | None = None) -> int:
    """How many refused inputs `error` messages account for: each message is one, plus its `repeated`
    (the agent coalesces a burst of errors into one message per component and interval)."""
    return sum(1 + e.get("repeated", 0) for e in errors if component is None or e["component"] == component)


def wait_online(port: int, base: str = "edgepipe/test", timeout: float = 30.0) -> None:
    """Until the agent says `online`: it subscribes to its inputs before it says so, and the broker handles
    one client's packets in order, so from then on no reading published to it is missed (an event, where a
    sleep would race a slow start-up)."""
    watcher = Collector(port, [f"{base}/status"])
    try:
        if not watcher.wait_for(lambda: watcher.matching("/status")[-1:] == [b"online"], timeout):
            raise TimeoutError(f"no agent said online on {base}/status within {timeout} s")
    finally:
        watcher.close()


def wait_for_stats(path: Path, predicate: Callable[[dict], bool], timeout: float) -> bool:
    """Until the agent's stats file (`stats_file`) satisfies `predicate`; readable while the broker is not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate(json.loads(path.read_text())):
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    return False
