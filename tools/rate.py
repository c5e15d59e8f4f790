"""`python -m tools.rate`: the readings/s an agent takes without loss, through the SHIPPED broker files.

mosquitto runs `deploy/mosquitto/edgepipe.conf` and `edgepipe.acl` as shipped (only the listener
and the files they name move to a temp dir); the agent logs in as its device, a sender as the
`sensors` role. For each QoS and offered rate the sender publishes numbered readings (`seq`) at
that pace for a few seconds, every one off the sensor's normal line (the worst case: each one is
an alert through the outbox); then the agent's own stats say how many it received and how many it
saw missing (`lost`, from the gaps in `seq`) or dropped itself (`dropped`, its queue full). The
rated rate is the highest offered rate with nothing lost; the table shows that a loss above it is
visible in the agent's stats, which is what issue 13 asked for. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tools.broker import ROLE_USERS, Mosquitto, free_port, shipped_acl

ROOT = Path(__file__).resolve().parents[1]
MOSQ = ROOT / "deploy" / "mosquitto"
DEVICE = "rate-dev"


def shipped_conf(port: int, folder: Path, queue_defaults: bool = False) -> str:
    """edgepipe.conf as shipped; only the port of `listener 1883 127.0.0.1` and the /etc/mosquitto files it names
    move (to `port`, to `folder`).
    `queue_defaults`: without its max_queued/max_inflight lines (mosquitto's defaults), for comparison."""
    text = (MOSQ / "edgepipe.conf").read_text()
    if queue_defaults:
        text = re.sub(r"^max_(queued|inflight)_messages .*\n", "", text, flags=re.M)
    if not re.search(r"^listener 1883 127\.0\.0\.1$", text, re.M) or "/etc/mosquitto/edgepipe." not in text:
        raise ValueError("deploy/mosquitto/edgepipe.conf no longer has `listener 1883 127.0.0.1` and /etc/mosquitto "
                         "paths")
    text = re.sub(r"^listener 1883 ", f"listener {port} ", text, flags=re.M)
    return text.replace("/etc/mosquitto/edgepipe.", f"{folder}/edgepipe.")


def shipped_broker(folder: Path, users: dict[str, str], acl_extra: str = "", queue_defaults: bool = False,
                   devices: list[str] | None = None) -> Mosquitto:
    """A mosquitto with the shipped conf and ACL (an agent section for each of `devices`, default: every user
    that is not a role of the ACL; then `acl_extra`), and a password file for `users`."""
    folder.mkdir(parents=True, exist_ok=True)
    passwd = folder / "edgepipe.passwd"
    passwd.touch()
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)
    devices = [u for u in users if u not in ROLE_USERS] if devices is None else devices
    (folder / "edgepipe.acl").write_text(shipped_acl(devices) + acl_extra)
    port = free_port()
    broker = Mosquitto(folder / "broker")
    broker.port = port
    work = folder / "broker"  # the shipped settings, not the test launcher's (it saves on every change)
    broker.conf.write_text(shipped_conf(port, folder, queue_defaults) + f"\npersistence_location {work}/\n"
                           f"log_dest file {work}/mosquitto.log\nuser {getpass.getuser()}\n")
    return broker


def agent_config(work: Path, port: int, queue_size: int) -> tuple[Path, Path]:
    (work / "agent-pw").write_text("agent-pw\n")
    stats = work / "stats.json"
    config = work / "agent.toml"
    config.write_text(
        f'device_id = "{DEVICE}"\nmodels_dir = "{ROOT / "models"}"\nstate_dir = "{work / "state"}"\n'
        f'stats_file = "{stats}"\nstats_interval = 0.5\nqueue_size = {queue_size}\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndiscovery = false\nusername = "{DEVICE}"\n'
        f'password_file = "{work / "agent-pw"}"\n[[sensor]]\nname = "s"\n')
    return config, stats


def read_stats(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def wait_stats(path: Path, until: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = read_stats(path)
        if stats and until(stats):
            return stats
        time.sleep(0.1)
    raise TimeoutError(f"agent stats never satisfied the condition: {read_stats(path)}")


def counters(stats: dict[str, Any]) -> dict[str, int]:
    return stats["pipelines"]["sensor/s"]


def _packet(kind: int, body: bytes) -> bytes:
    """An MQTT 3.1.1 packet: fixed header with the remaining length as a variable byte integer."""
    length, encoded = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (128 if length else 0)])
        if not length:
            return bytes([kind]) + encoded + body


def _text(value: str) -> bytes:
    return struct.pack("!H", len(value)) + value.encode()


def send(port: int, qos: int, rate: float, count: int, first_seq: int) -> None:
    """`count` numbered anomalous readings at `rate`/s as the `sensors` role, all taken by the broker.

    Written as raw MQTT 3.1.1 on a socket: paho and `mosquitto_pub -l` at QoS 1 managed only a few
    hundred per second on this loaded machine, so they, not the agent, would have set the rate."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_packet(0x10, _text("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60) + _text("rate-sensors")
                         + _text("sensors") + _text("sensors-pw")))
    if sock.recv(4) != b"\x20\x02\x00\x00":
        raise RuntimeError("the broker refused the sensors role")
    acks = threading.Thread(target=_drain, args=(sock, count if qos else 0), daemon=True)
    acks.start()
    topic, start = _text(f"edgepipe/{DEVICE}/sensors/s/reading"), time.perf_counter()
    for i in range(count):
        body = json.dumps({"seq": first_seq + i, "values": [9.0, -9.0]}).encode()
        ident = struct.pack("!H", i % 65535 + 1) if qos else b""
        sock.sendall(_packet(0x30 | (qos << 1), topic + ident + body))
        ahead = start + (i + 1) / rate - time.perf_counter()
        if ahead > 0.002:  # pace in steps of a few ms: a sleep per reading would be the limit
            time.sleep(ahead)
    acks.join(120)  # QoS 1: every PUBACK back, so the broker has taken every reading
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()


def _drain(sock: socket.socket, pubacks: int) -> None:
    """Read the PUBACKs (4 bytes each; nothing else comes to a client that subscribes to nothing)."""
    left = 4 * pubacks
    while left > 0 and (chunk := sock.recv(65536)):
        left -= len(chunk)


def settled(path: Path, previous: dict[str, Any] | None = None, quiet: float = 2.0) -> dict[str, Any]:
    """The agent's counters once `received` has not moved for `quiet` s (the broker queue drained)."""
    last, since = None, time.monotonic()
    while time.monotonic() - since < quiet:
        now = counters(read_stats(path)) if read_stats(path) else None
        if now and (last is None or now["received"] != last["received"]):
            last, since = now, time.monotonic()
        time.sleep(0.25)
    return last or {}


def measure(rates: list[float], qos_levels: list[int], seconds: float, queue_size: int,
            queue_defaults: bool = False) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgepipe-rate-") as tmp:
        work = Path(tmp)
        broker = shipped_broker(work / "mosq", {DEVICE: "agent-pw", "sensors": "sensors-pw"},
                                queue_defaults=queue_defaults).start()
        config, stats_path = agent_config(work, broker.port, queue_size)
        agent = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_stats(stats_path, lambda s: s.get("connected") and s.get("acl") == "ok")
            seq = 0
            for qos in qos_levels:
                for rate in rates:
                    before = settled(stats_path)
                    count, t0 = int(rate * seconds), time.perf_counter()
                    send(broker.port, qos, rate, count, seq)
                    elapsed = time.perf_counter() - t0
                    settled(stats_path)
                    send(broker.port, 1, rate, 1, seq + count)  # a closing reading: shows a gap at the end
                    seq += count + 1
                    rows.append(row(qos, rate, count + 1, count / elapsed, before, settled(stats_path)))
        finally:
            agent.terminate()
            agent.wait(30)
            broker.stop()
    return rows


def row(qos: int, rate: float, sent: int, achieved: float, before: dict[str, Any], after: dict[str, Any]) -> dict:
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("received", "lost", "dropped", "processed")}
    return {"qos": qos, "offered": rate, "achieved": achieved, "sent": sent, "received": delta["received"],
            "missing": sent - delta["received"], "lost_counted": delta["lost"], "dropped": delta["dropped"],
            "processed": delta["processed"]}


def render(rows: list[dict[str, Any]], seconds: float) -> str:
    lines = [f"Readings offered for {seconds:.0f} s per row, every one anomalous (an alert each, through the "
             "outbox), shipped deploy/mosquitto/ conf and ACL, agent and sender on one machine.", "",
             "| QoS | offered /s | sent | received by the agent | missing | agent saw as `lost` (seq gaps) "
             "| agent `dropped` (its queue) | processed |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['qos']} | {r['offered']:.0f} (sent at {r['achieved']:.0f}) | {r['sent']} | {r['received']} "
                     f"| {r['missing']} | {r['lost_counted']} | {r['dropped']} | {r['processed']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="250,500,1000,2000", help="offered readings/s, comma-separated")
    parser.add_argument("--qos", default="0,1", help="QoS levels, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each rate is offered")
    parser.add_argument("--queue-size", type=int, default=1000, help="the agent's queue_size")
    parser.add_argument("--mosquitto-defaults", action="store_true",
                        help="drop the conf's max_queued/max_inflight_messages (mosquitto's defaults), to compare")
    args = parser.parse_args(argv)
    rows = measure([float(r) for r in args.rates.split(",")], [int(q) for q in args.qos.split(",")],
                   args.seconds, args.queue_size, args.mosquitto_defaults)
    print(render(rows, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
