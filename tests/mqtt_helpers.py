"""Real MQTT for tests: a mosquitto the test starts, stops and restarts on a free loopback port,
a collecting subscriber, and the agent as a subprocess on a Pi-like Python (no TensorFlow)."""

from __future__ import annotations

import getpass
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import MODELS_DIR, ROOT, skip_without
from tests.test_edge_isolation import no_tf_env
from tools.system_packages import mosquitto_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Broker:
    """A mosquitto process of the test's own, with persistence so persistent sessions survive restarts."""

    def __init__(self, workdir: Path, extra_conf: str = "", listener: str | None = None) -> None:
        skip_without("mosquitto")  # every broker test, fixture or not, skips naming the package
        self.binary = mosquitto_binary()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            (listener or f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
            # save on every change (subscription, queued message): a SIGKILL then loses no session
            + f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\nautosave_on_changes true\n"
            + f"log_dest file {workdir}/mosquitto.log\n"
            # started as root, mosquitto drops to user `mosquitto`, which cannot write the test's files:
            # no persistence, no log. Stay the user that runs the tests.
            + f"user {getpass.getuser()}\n" + extra_conf)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def restart(self, kill: bool = False, down_for: float = 0.0) -> None:
        self.stop(kill)
        time.sleep(down_for)
        self.start()


class Collector:
    """A subscriber that keeps every message (topic, payload bytes, retain) it receives."""

    def __init__(self, port: int, topics: list[str], client_id: str = "", clean: bool = True,
                 username: str | None = None, password: str | None = None, tls_ca: Path | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.on_connect = lambda c, u, f, r, p: (
            [c.subscribe(t, qos=1) for t in topics], self.connected.set())
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError("collector could not connect")
        time.sleep(0.2)  # let the SUBACK land

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self.cond.notify_all()

    def matching(self, suffix: str) -> list[bytes]:
        with self.cond:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def json(self, suffix: str) -> list[dict]:
        return [json.loads(p) for p in self.matching(suffix)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish(port: int, topic: str, payloads: list[bytes | str], qos: int = 1, delay: float = 0.0) -> None:
    """Publish and wait until every message is acknowledged."""
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=qos).wait_for_publish(10)
            if delay:
                time.sleep(delay)
    finally:
        client.loop_stop()
        client.disconnect()


def write_config(path: Path, port: int, body: str, device: str = "test", state_dir: Path | None = None,
                 models_dir: Path | None = None, stats_interval: float = 1.0, stats_file: Path | None = None) -> Path:
    state = state_dir or path.parent / "state"
    path.write_text(
        (f'stats_file = "{stats_file}"\n' if stats_file else "")
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

    def __init__(self, config: Path, *extra: str, stdin: Any = None) -> None:
        self.log_path = config.with_suffix(".log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config), *extra],
                                     env=no_tf_env(), cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
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
