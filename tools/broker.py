"""The MQTT brokers the demo, the benchmarks and the tests start: one launcher for all of them.

- `Mosquitto`: a mosquitto of our own on a free loopback port (persistence, so a persistent session
  survives a restart; it can be stopped, SIGKILLed and restarted);
- `BridgedPair`: a Pi-local mosquitto bridged to a central one by deploy/mosquitto/bridge.conf;
- `NatsCluster`: three nats-server nodes with JetStream and their MQTT listeners, each configured from
  deploy/nats/cluster.conf (only addresses, ports and the store move to loopback); `NatsNode.solo`: one;
- `start_embedded`: amqtt in this process, for machines without mosquitto (the demo's last resort).

Every port is a free loopback port below the kernel's ephemeral range (`free_port`), so a killed broker
restarts on its port. Not part of the agent: nothing here is installed on a Pi.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.system_packages import mosquitto_binary, nats_binary

log = logging.getLogger(__name__)
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
MOSQ_DEPLOY = ROOT / "deploy" / "mosquitto"
NATS_TEMPLATE = ROOT / "deploy" / "nats" / "cluster.conf"


def find_mosquitto() -> str | None:
    """The mosquitto binary, found as the test suite's set-up finds it ($EDGEPIPE_MOSQUITTO, PATH, sbin)."""
    return mosquitto_binary()


# --- ports ---------------------------------------------------------------------------------------
_handed_out: set[int] = set()


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port nothing listens on, below the ephemeral range, not handed out before by this process.

    Not port 0: the kernel picks that from its ephemeral range, from which it also takes the source port of
    every outgoing connection, so while a broker we killed is down a client connecting elsewhere may take its
    port, and the restart fails with "address already in use" (seen with a NATS node)."""
    low, high = ephemeral_range()
    first, last = (11000, low - 1) if low > 12000 else (high + 1, 65535)
    for _ in range(2000):
        port = random.randint(first, last)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {first}-{last}")


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 10.0, host: str = HOST) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def mqtt_connack(port: int, timeout: float = 5.0) -> bool:
    """A raw MQTT 3.1.1 CONNECT (clean session) answered with CONNACK 0 (no paho needed)."""
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + b"\x00\x05probe"
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(bytes([0x10, len(body)]) + body)
            return s.recv(4) == b"\x20\x02\x00\x00"
    except OSError:
        return False


class BrokerProcess:
    """A broker process of ours: stop it (SIGTERM, or SIGKILL as a crash), ask whether it runs, read its log."""

    proc: subprocess.Popen | None = None
    log_path: Path

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --- mosquitto -----------------------------------------------------------------------------------
class Mosquitto(BrokerProcess):
    """A mosquitto process of our own, with persistence so persistent sessions survive restarts."""

    def __init__(self, workdir: Path, extra_conf: str = "", listener: str | None = None,
                 save_every_change: bool = True, port: int | None = None) -> None:
        """`listener`: the listener and authentication lines instead of an anonymous loopback listener
        (`{port}` in it is this broker's port). `save_every_change=False`: saved only at a clean stop, so a
        SIGKILL forgets what came since."""
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError("mosquitto is not installed: `apt-get install mosquitto`")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.conf.write_text(
            (listener or "listener {port} 127.0.0.1\nallow_anonymous true\n").replace("{port}", str(self.port))
            # save on every change (subscription, queued message): a SIGKILL then loses no session
            + f"persistence true\npersistence_location {self.workdir}/\n"
            + ("autosave_interval 1\nautosave_on_changes true\n" if save_every_change else "autosave_interval 3600\n")
            + f"log_dest file {self.log_path}\n"
            # started as root, mosquitto drops to user `mosquitto`, which cannot write our files:
            # no persistence, no log. Stay the user that runs us.
            + f"user {getpass.getuser()}\n" + extra_conf)

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop(kill=True)
            raise TimeoutError(f"mosquitto did not listen on {self.port}: {self.log_text()[-800:]}") from None
        return self

    def restart(self, kill: bool = False, down_for: float = 0.0) -> None:
        self.stop(kill)
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def add_password(passwd: Path, user: str, password: str) -> None:
    """One user in a mosquitto password file (created if missing), hashed by mosquitto_passwd."""
    passwd.parent.mkdir(parents=True, exist_ok=True)
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)


ROLE_USERS = ("homeassistant", "sensors", "viewer", "updater", "fleet")  # edgepipe.acl's sections; not devices


def shipped_acl(devices: list[str]) -> str:
    """deploy/mosquitto/edgepipe.acl with one agent section per device, written by deploy/mosquitto/edgepipe-acl.sh
    as the installer writes them (the shipped file alone grants no agent anything)."""
    with tempfile.TemporaryDirectory() as folder:
        acl = Path(folder) / "edgepipe.acl"
        acl.write_text((MOSQ_DEPLOY / "edgepipe.acl").read_text())
        for device in devices:
            subprocess.run(["bash", str(MOSQ_DEPLOY / "edgepipe-acl.sh"), str(acl), device], check=True,
                           capture_output=True, timeout=30)
        return acl.read_text()


def bridge_conf(central_port: int, device: str, username: str | None = None, password: str | None = None) -> str:
    """deploy/mosquitto/bridge.conf for a central broker on loopback: the address, the device id and the
    credentials filled in, its three TLS lines left out (plain TCP here)."""
    text = (MOSQ_DEPLOY / "bridge.conf").read_text()
    if "address central.example.net:8883" not in text:
        raise ValueError("deploy/mosquitto/bridge.conf no longer has `address central.example.net:8883`")
    lines = []
    for line in text.replace("central.example.net:8883", f"{HOST}:{central_port}").replace(
            "{device_id}", device).splitlines():
        word = line.split(" ", 1)[0]
        if word in ("bridge_cafile", "bridge_insecure", "bridge_tls_version"):
            continue
        if word == "remote_username":
            line = f"remote_username {username}" if username else "# no remote_username"
        elif word == "remote_password":
            line = f"remote_password {password}" if password else "# no remote_password"
        lines.append(line)
    return "\n".join(lines) + "\n"


class BridgedPair:
    """A Pi-local mosquitto bridged (deploy/mosquitto/bridge.conf) to a central mosquitto; both on loopback.

    `central` and `local` may be given (with the shipped conf and ACL, say); the bridge is appended to the local
    broker's conf. Start the central broker first, or not at all (the bridge keeps retrying)."""

    def __init__(self, workdir: Path, device: str = "pi-shed", *, central: Mosquitto | None = None,
                 local: Mosquitto | None = None, bridge_user: str | None = None,
                 bridge_password: str | None = None, local_extra: str = "") -> None:
        self.device = device
        self.central = central or Mosquitto(Path(workdir) / "central")
        self.local = local or Mosquitto(Path(workdir) / "local")
        with self.local.conf.open("a") as conf:
            conf.write("\n" + local_extra + bridge_conf(self.central.port, device, bridge_user, bridge_password))

    def start(self) -> BridgedPair:
        self.central.start()
        self.local.start()
        return self

    def stop(self) -> None:
        self.local.stop()
        self.central.stop()

    def __enter__(self) -> BridgedPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- NATS ----------------------------------------------------------------------------------------
def http_json(port: int, path: str, timeout: float = 2.0) -> tuple[int, Any]:
    """(status, decoded JSON) from a NATS monitoring endpoint; (0, None) when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return 0, None


def nats_conf(name: str, *, client_port: int, http_port: int, cluster_port: int | None, mqtt_port: int,
              routes: list[int], store: Path, users: bool) -> str:
    """deploy/nats/cluster.conf for one node on loopback: its server_name, addresses, ports and store; every
    other setting (JetStream limits, stream_replicas, ack_wait, ...) as shipped. No routes: a lone node."""
    text = NATS_TEMPLATE.read_text()
    route_lines = "\n".join(f"    nats-route://{HOST}:{p}" for p in routes)
    substitutions = [
        (r"^listen: 0\.0\.0\.0:4222", f"listen: {HOST}:{client_port}"),
        (r"^http: 127\.0\.0\.1:8222", f"http: {HOST}:{http_port}"),
        (r'^(\s+)store_dir: "/var/lib/nats"', rf'\g<1>store_dir: "{store}"'),
        (r"^(\s+)listen: 0\.0\.0\.0:6222", rf"\g<1>listen: {HOST}:{cluster_port}"),
        (r"^(\s+)nats-route://nats-1\.edgepipe\.lan:6222\n(\s+nats-route://.*\n)*", route_lines + "\n"),
        (r"^(\s+)listen: 0\.0\.0\.0:1883", rf"\g<1>listen: {HOST}:{mqtt_port}"),
        (r'^include "users\.conf"', 'include "users.conf"' if users else "# no users: anonymous"),
    ]
    for pattern, replacement in substitutions:
        text, count = re.subn(pattern, replacement, text, count=1, flags=re.M)
        if count != 1:
            raise ValueError(f"{NATS_TEMPLATE}: no line matches {pattern!r}")
    if cluster_port is None:  # a lone node: no cluster block, and one replica (nats refuses R3 unclustered)
        text = re.sub(r"^cluster \{.*?^\}\n", "", text, flags=re.M | re.S)
        text = re.sub(r"^(\s+)stream_replicas: 3", r"\g<1>stream_replicas: 1", text, count=1, flags=re.M)
    return f"server_name: {name}\n" + text


class NatsNode(BrokerProcess):
    """One nats-server with JetStream, an MQTT listener and a monitoring port, on free loopback ports."""

    def __init__(self, workdir: Path, name: str, routes: list[int] | None = None, users_conf: str | None = None,
                 clustered: bool = True) -> None:
        binary = nats_binary()
        if binary is None:
            raise RuntimeError("nats-server is not installed: `apt-get install nats-server`")
        self.binary, self.name = binary, name
        self.workdir = Path(workdir) / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_port, self.http_port, self.mqtt_port = free_port(), free_port(), free_port()
        self.cluster_port = free_port() if clustered else None
        self.routes = routes or []
        self.users_conf = users_conf
        self.conf = self.workdir / "nats.conf"
        self.log_path = self.workdir / "nats.log"

    @classmethod
    def solo(cls, workdir: Path, users_conf: str | None = None) -> NatsNode:
        """One node, no cluster (its MQTT streams are R1), started and ready."""
        node = cls(workdir, "solo", users_conf=users_conf, clustered=False).start()
        deadline = time.monotonic() + 30
        while not node.healthz():
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats solo node not healthy: {node.log_text()[-800:]}")
            time.sleep(0.05)
        return node

    def start(self) -> NatsNode:
        if self.users_conf is not None:
            (self.workdir / "users.conf").write_text(self.users_conf)
        self.conf.write_text(nats_conf(self.name, client_port=self.client_port, http_port=self.http_port,
                                       cluster_port=self.cluster_port, mqtt_port=self.mqtt_port, routes=self.routes,
                                       store=self.workdir / "store", users=self.users_conf is not None))
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(self.mqtt_port, 15)
        except TimeoutError:
            self.stop(kill=True)
            raise TimeoutError(f"nats node {self.name} did not listen: {self.log_text()[-800:]}") from None
        return self

    def healthz(self) -> bool:
        """`/healthz` 200: this node knows the JetStream meta leader and its assets are current. (Not
        `?js-enabled-only=true`: that says 200 on a lone node with no leader, which answers no CONNECT.)"""
        status, body = http_json(self.http_port, "/healthz")
        return status == 200 and isinstance(body, dict) and body.get("status") == "ok"

    def meta_leader(self) -> str | None:
        return ((http_json(self.http_port, "/jsz")[1] or {}).get("meta_cluster") or {}).get("leader") or None


class NatsCluster:
    """Three (or `size`) NATS nodes routed to each other, MQTT on each, streams with three replicas.

    `users_conf`: the authorization block (edgepipe-nats-users.sh's output) every node includes; None:
    anonymous. `kill(i)` is a crash (SIGKILL), `restart(i)` brings the node back with its store."""

    def __init__(self, workdir: Path, size: int = 3, users_conf: str | None = None) -> None:
        self.nodes = [NatsNode(workdir, f"n{i + 1}", users_conf=users_conf) for i in range(size)]
        routes = [n.cluster_port for n in self.nodes if n.cluster_port is not None]
        for node in self.nodes:
            node.routes = routes  # its own included, as in deploy/nats/: nats ignores the route to itself
        self.ready_after: float | None = None

    @property
    def mqtt_ports(self) -> list[int]:
        return [n.mqtt_port for n in self.nodes]

    def addresses(self) -> list[str]:
        """`host:port` of every node's MQTT listener, as the agent's `mqtt.brokers` takes them."""
        return [f"{HOST}:{p}" for p in self.mqtt_ports]

    def start(self, timeout: float = 60.0) -> NatsCluster:
        began = time.monotonic()
        try:
            for node in self.nodes:
                node.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_after = time.monotonic() - began
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Until every running node answers /healthz 200 and names the same meta leader; seconds waited."""
        began = time.monotonic()
        nodes = [n for n in self.nodes if n.running()]
        while time.monotonic() - began < timeout:
            leaders = {n.meta_leader() for n in nodes}
            if None not in leaders and len(leaders) == 1 and all(n.healthz() for n in nodes):
                return time.monotonic() - began
            time.sleep(0.1)
        raise TimeoutError(f"NATS cluster not ready after {timeout} s: " + "; ".join(
            f"{n.name} leader={n.meta_leader()} healthz={http_json(n.http_port, '/healthz')}" for n in nodes))

    def kill(self, index: int) -> None:
        self.nodes[index].stop(kill=True)

    def restart(self, index: int, timeout: float = 60.0) -> float:
        """Start a stopped node again with its store; seconds until every running node names the same meta
        leader and the node answers an MQTT CONNECT. (Not /healthz: after a rejoin one node's stayed 503 for
        over a minute now and then, naming one subscription's consumer "not current", while MQTT worked.)"""
        began = time.monotonic()
        node = self.nodes[index]
        node.start()
        running = [n for n in self.nodes if n.running()]
        while time.monotonic() - began < timeout:
            leaders = {n.meta_leader() for n in running}
            if None not in leaders and len(leaders) == 1 and mqtt_connack(node.mqtt_port):
                return time.monotonic() - began
            time.sleep(0.1)
        raise TimeoutError(f"{node.name} did not rejoin within {timeout} s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- amqtt ---------------------------------------------------------------------------------------
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
