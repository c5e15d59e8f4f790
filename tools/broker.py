"""The MQTT brokers the demo, the benchmark and the tests start: one launcher for all three.

`Mosquitto` runs a mosquitto of our own on a free loopback port (with persistence, so a
persistent session survives a restart; it can be stopped, SIGKILLed and restarted);
`start_embedded` runs amqtt in this process for machines without mosquitto (the demo's last
resort). Not part of the agent: nothing here is installed on a Pi.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tools.system_packages import mosquitto_binary

log = logging.getLogger(__name__)


def find_mosquitto() -> str | None:
    """The mosquitto binary, found as the test suite's set-up finds it ($EDGEPIPE_MOSQUITTO, PATH, sbin)."""
    return mosquitto_binary()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


class Mosquitto:
    """A mosquitto process of our own, with persistence so persistent sessions survive restarts."""

    def __init__(self, workdir: Path, extra_conf: str = "", listener: str | None = None,
                 save_every_change: bool = True) -> None:
        """`save_every_change=False`: saved only at a clean stop, so a SIGKILL forgets what came since."""
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError("mosquitto is not installed: `apt-get install mosquitto`")
        self.binary = binary
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            (listener or f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
            # save on every change (subscription, queued message): a SIGKILL then loses no session
            + f"persistence true\npersistence_location {workdir}/\n"
            + ("autosave_interval 1\nautosave_on_changes true\n" if save_every_change else "autosave_interval 3600\n")
            + f"log_dest file {workdir}/mosquitto.log\n"
            # started as root, mosquitto drops to user `mosquitto`, which cannot write our files:
            # no persistence, no log. Stay the user that runs us.
            + f"user {getpass.getuser()}\n" + extra_conf)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, kill: bool = False, down_for: float = 0.0) -> None:
        self.stop(kill)
        time.sleep(down_for)
        self.start()


def start_embedded() -> tuple[int, Callable[[], None]] | None:
    """amqtt (MQTT 3.1.1 only) in a thread of its own: (port, stop), or None when it cannot start.

    amqtt's Broker must be created inside a running event loop, hence the thread with its own loop.
    """
    try:
        from amqtt.broker import Broker
    except ImportError:
        return None
    port = free_port()
    ready, failure = threading.Event(), []
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()

    async def serve() -> None:
        config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                  "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
        broker = Broker(config)
        try:
            await broker.start()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            failure.append(exc)
            ready.set()
            return
        ready.set()
        await stopping.wait()
        await broker.shutdown()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.close()), name="amqtt",
                              daemon=True)
    thread.start()
    ready.wait(15)
    if failure or not listening("127.0.0.1", port):
        log.warning("embedded amqtt broker did not start: %s", failure[0] if failure else "not listening")
        return None

    def stop() -> None:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)

    return port, stop
