"""Messages per second through each broker edgepipe ships a configuration for, with one and the same publisher.

`python -m tools.bench_brokers` (`make bench-brokers`) starts, on loopback ports of this machine: mosquitto with
the shipped deploy/mosquitto/edgepipe.conf and ACL (the `sensors` user publishes, `viewer` reads), one nats-server
node and the three-node NATS cluster of deploy/nats/cluster.conf (JetStream R3, what survives a node). For each,
one paho publisher sends `--messages` alert-sized QoS 1 messages (`--window` unacknowledged at most, as the agent's
outbox does) and one subscriber -- on another node for the cluster -- receives them at QoS 1. Reported: messages/s
from the first publish to the last arrival (end to end) and to the last PUBACK, median of `--runs`. The section
"Brokers" of docs/benchmarks.md (or --out) is replaced; the rest of the file is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tools.bench import replace_section
from tools.broker import HOST, NatsCluster, NatsNode
from tools.rate import shipped_broker

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Brokers: messages per second"
TOPIC = "edgepipe/bench/sensors/line1/reading"  # what the `sensors` role may write
Target = tuple[int, int, dict[str, str]]  # publisher port, subscriber port, credentials by role


def client(port: int, name: str, credentials: tuple[str, str] | None, window: int = 20) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{time.monotonic_ns()}")
    c.max_inflight_messages_set(window)  # before connecting (paho refuses it after)
    c.max_queued_messages_set(0)
    if credentials:
        c.username_pw_set(*credentials)
    c.connect(HOST, port)
    return c


def run_once(pub_port: int, sub_port: int, count: int, window: int, users: dict[str, tuple[str, str]]) -> dict:
    """One run: the subscriber is in (SUBACK) before the first publish; seconds to the last PUBACK and arrival."""
    got, done, subscribed = [0], threading.Event(), threading.Event()
    sub = client(sub_port, "sub", users.get("sub"))
    sub.on_subscribe = lambda *a: subscribed.set() if not any(r.is_failure for r in a[3]) else None

    def on_message(c: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        got[0] += 1
        if got[0] >= count:
            done.set()

    sub.on_message = on_message
    sub.loop_start()
    for _ in range(20):  # a NATS node may refuse a QoS 1 subscription while its consumer is created
        sub.subscribe(TOPIC, qos=1)
        if subscribed.wait(3):
            break
    else:
        raise RuntimeError("the subscriber's SUBSCRIBE was refused 20 times")
    pub = client(pub_port, "pub", users.get("pub"), window)
    pub.loop_start()
    payload = json.dumps({"v": 1, "id": "0" * 32, "sensor": "line1", "score": 0.0123, "threshold": 0.01,
                          "seq": 0}).encode()  # about the size of an alert
    began = time.monotonic()
    infos = [pub.publish(TOPIC, payload, qos=1) for _ in range(count)]
    for info in infos:
        info.wait_for_publish(120)
    acked = time.monotonic() - began
    arrived = done.wait(120)
    elapsed = time.monotonic() - began
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return {"acked_per_s": count / acked, "end_to_end_per_s": count / elapsed if arrived else 0.0,
            "arrived": got[0]}


@contextmanager
def mosquitto(work: Path) -> Iterator[Target]:
    broker = shipped_broker(work / "mosq", {"sensors": "bench-s", "viewer": "bench-v"}).start()
    try:
        yield broker.port, broker.port, {"pub": ("sensors", "bench-s"), "sub": ("viewer", "bench-v")}
    finally:
        broker.stop()


@contextmanager
def nats_single(work: Path) -> Iterator[Target]:
    node = NatsNode.solo(work / "solo")
    try:
        yield node.mqtt_port, node.mqtt_port, {}
    finally:
        node.stop()


@contextmanager
def nats_cluster(work: Path) -> Iterator[Target]:
    cluster = NatsCluster(work / "cluster").start()
    try:
        yield cluster.mqtt_ports[0], cluster.mqtt_ports[1], {}
    finally:
        cluster.stop()


BROKERS: list[tuple[str, Callable]] = [
    ("mosquitto 2.0, shipped edgepipe.conf + ACL (one process)", mosquitto),
    ("nats-server 2.9, one node (JetStream R1)", nats_single),
    ("nats-server 2.9, three-node cluster (JetStream R3), subscriber on another node", nats_cluster),
]


def measure(count: int, window: int, runs: int) -> list[dict]:
    rows = []
    for name, start in BROKERS:
        with tempfile.TemporaryDirectory() as folder, start(Path(folder)) as (pub_port, sub_port, users):
            results = [run_once(pub_port, sub_port, count, window, users) for _ in range(runs)]
        rows.append({"broker": name, "runs": results,
                     "acked": statistics.median(r["acked_per_s"] for r in results),
                     "end_to_end": statistics.median(r["end_to_end_per_s"] for r in results)})
        print(f"{name}: {rows[-1]['end_to_end']:.0f} msg/s end to end, {rows[-1]['acked']:.0f} msg/s acknowledged",
              file=sys.stderr)
    return rows


def load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "unknown"


def render(rows: list[dict], count: int, window: int, runs: int, cores: int, loads: tuple[str, str]) -> str:
    lines = [f"{SECTION}\n",
             f"Made by `make bench-brokers` (`python -m tools.bench_brokers`) on this machine ({cores} cores, "
             f"loopback): one paho publisher, {count} alert-sized QoS 1 messages per run, at most {window} "
             f"unacknowledged, one QoS 1 subscriber; median of {runs} runs (each run in the last column). "
             "Every broker, the publisher and the subscriber share the cores, so these are this machine's "
             f"numbers, not a broker's ceiling; the 1-minute load average was {loads[0]} before and {loads[1]} "
             "after (other work on the machine slows the cluster most: its three nodes replicate every message).\n",
             "| broker | messages/s end to end | messages/s acknowledged to the publisher | each run, end to end |",
             "| --- | --- | --- | --- |"]
    for row in rows:
        each = ", ".join(f"{r['end_to_end_per_s']:.0f}" if r["arrived"] >= count else f"lost {count - r['arrived']}"
                         for r in row["runs"])
        lines.append(f"| {row['broker']} | {row['end_to_end']:.0f} | {row['acked']:.0f} | {each} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_brokers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--window", type=int, default=50, help="QoS 1 messages in flight (the agent's outbox: 50)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    before = load()
    rows = measure(args.messages, args.window, args.runs)
    section = render(rows, args.messages, args.window, args.runs, os.cpu_count() or 0, (before, load()))
    print(section)
    replace_section(args.out, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
