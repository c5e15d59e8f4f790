"""The fleet commands' one way onto the broker: options from argparse, a connected paho client, retained state.

`status` and `rollout` read what the agents leave retained (status, stats, model states, update progress,
info) rather than asking each device: a broker that holds the retained set answers for devices that are
asleep or gone, and one subscription to `<prefix>/+/...` covers a fleet of any size.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import paho.mqtt.client as paho

from fleet.args import topic_prefix

log = logging.getLogger(__name__)

PREFIX = "edgepipe"
#: the retained topics under each device's base that make up its state (DESIGN, contract 2; `info` from issue 26)
DEVICE_TOPICS = ("status", "stats", "info", "model/#", "update/progress")
#: options whose value may start with "-" (`--stages -5,100` is a bad value, not a missing one): see fleet/args.py
DASH_OPTIONS = ("--stages", "--max-failed", "--timeout", "--verdict-timeout", "--parallel", "--chunk-kb", "--settle",
                "--stats-interval", "--stale-factor", "--stop-after")
SYNC = "_fleet/sync"  # a controller's own round trip: when its marker is back, the retained set before it is in


@dataclass(frozen=True)
class BrokerOptions:
    """Where the broker is and how to log in; `mqtt_version` "5" or "3.1.1" (NATS speaks only 3.1.1)."""

    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    mqtt_version: str = "5"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port}: expected 1-65535")
        if self.mqtt_version not in ("5", "3.1.1"):
            raise ValueError(f"mqtt version {self.mqtt_version!r}: expected 5 or 3.1.1")


def add_broker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", default="localhost:1883", help="HOST:PORT of the broker (default %(default)s)")
    parser.add_argument("--username", help="broker user (the shipped ACL's fleet role: `fleet`)")
    parser.add_argument("--password-file", type=Path, help="a file holding the broker password")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (--ca-file for a private CA)")
    parser.add_argument("--ca-file", type=Path, help="CA certificate that signed the broker's (implies --tls)")
    parser.add_argument("--mqtt-version", choices=("5", "3.1.1"), default="5",
                        help="protocol (default %(default)s; a NATS cluster needs 3.1.1)")
    parser.add_argument("--prefix", type=topic_prefix, default=PREFIX,
                        help="the devices' base topics are PREFIX/<device> (default %(default)s)")


def options_from(args: argparse.Namespace) -> BrokerOptions:
    """`--broker` and the login options as BrokerOptions; SystemExit naming the option for a bad one.
    (`ship` has no --tls/--mqtt-version: it speaks 3.1.1 in the clear, as before.)"""
    host, _, port = args.broker.rpartition(":")
    if not port.isdigit():
        refuse(f"--broker {args.broker!r}: expected HOST:PORT")
    try:
        password = args.password_file.read_text().strip() if args.password_file else None
    except (OSError, UnicodeDecodeError) as exc:
        refuse(f"--password-file {args.password_file}: cannot read it ({exc})")
    tls, ca_file = getattr(args, "tls", False), getattr(args, "ca_file", None)
    try:
        return BrokerOptions(host or "localhost", int(port), args.username, password, bool(tls or ca_file), ca_file,
                             getattr(args, "mqtt_version", "3.1.1"))
    except ValueError as exc:
        refuse(f"--broker {args.broker!r}: {exc}")


def refuse(message: str) -> NoReturn:
    """A bad argument found after argparse: said on stderr, exit status 2 like argparse's own refusals."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def connect(opts: BrokerOptions, name: str, will: tuple[str, bytes] | None = None,
            on_message: Callable[[paho.MQTTMessage], None] | None = None, timeout: float = 10.0) -> paho.Client:
    """A started, connected client (id `edgepipe-<name>-<random>`); `will` = (topic, payload), retained QoS 1.
    Raises ConnectionError naming the broker's reason when it refuses or does not answer."""
    protocol = paho.MQTTv5 if opts.mqtt_version == "5" else paho.MQTTv311
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"edgepipe-{name}-{uuid.uuid4().hex[:8]}",
                         protocol=protocol)
    if opts.username:
        client.username_pw_set(opts.username, opts.password)
    if opts.tls:
        client.tls_set(ca_certs=str(opts.ca_file) if opts.ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
    if will:
        client.will_set(will[0], will[1], qos=1, retain=True)
    answered, outcome = threading.Event(), {}

    def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        outcome["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    if on_message:
        client.on_message = lambda c, u, msg: on_message(msg)
    client.reconnect_delay_set(1, 5)
    try:
        client.connect(opts.host, opts.port, keepalive=15)
    except OSError as exc:
        raise ConnectionError(f"cannot reach the broker at {opts.host}:{opts.port}: {exc}") from None
    client.loop_start()
    if not answered.wait(timeout) or outcome["reason"].is_failure:
        client.disconnect()
        client.loop_stop()
        why = outcome.get("reason", f"no CONNACK within {timeout:g} s")
        raise ConnectionError(f"the broker at {opts.host}:{opts.port} refused the connection: {why}")
    return client


def subscribe(client: paho.Client, topics: list[str], timeout: float = 10.0, qos: int = 0) -> None:
    """Subscribe and wait for every SUBACK; a refusal (ACL) raises naming the topics.

    QoS 0 by default: what the fleet commands read is retained state, and a broker caps the QoS 1 messages it
    queues for one client (mosquitto's max_queued_messages, 1000): a QoS 1 view of 2,000 devices' retained
    topics came back with 1,020 of them."""
    done, failed, pending = threading.Condition(), [], set()

    def on_subscribe(c: paho.Client, userdata: Any, mid: int, reasons: list, properties: Any) -> None:
        with done:
            failed.extend(str(r) for r in reasons if r.is_failure)
            pending.discard(mid)
            done.notify_all()

    client.on_subscribe = on_subscribe
    with done:
        for topic in topics:
            pending.add(client.subscribe(topic, qos=qos)[1])
        if not done.wait_for(lambda: not pending, timeout):
            raise ConnectionError(f"no SUBACK for {topics} within {timeout:g} s")
    if failed:
        raise PermissionError(f"the broker refused the subscription to {topics}: {failed}")


class Retained:
    """The latest message per topic under some filters, kept current as messages arrive.

    `settle()` returns once `quiet` seconds pass with nothing new after the subscription (the broker sends
    the retained set at SUBACK; on a NATS cluster it may trickle), at most `timeout`. `on_change` is called
    (outside the lock) with each topic that changed, for a live view.
    """

    def __init__(self, opts: BrokerOptions, topics: list[str], name: str = "fleet",
                 on_change: Callable[[str], None] | None = None, will: tuple[str, bytes] | None = None) -> None:
        self.latest: dict[str, bytes] = {}
        self.received = 0
        self.markers: set[str] = set()
        self.last_arrival = time.monotonic()
        self.cond = threading.Condition()
        self.on_change = on_change
        self.client = connect(opts, name, will=will, on_message=self._on_message)
        subscribe(self.client, topics)

    def _on_message(self, msg: paho.MQTTMessage) -> None:
        with self.cond:
            if msg.topic.startswith(SYNC + "/"):
                self.markers.add(msg.topic)
                self.cond.notify_all()
                return
            if msg.payload:
                self.latest[msg.topic] = msg.payload
            else:  # an empty retained payload deletes the topic's retained message
                self.latest.pop(msg.topic, None)
            self.received += 1
            self.last_arrival = time.monotonic()
            self.cond.notify_all()
        if self.on_change:
            self.on_change(msg.topic)

    def settle(self, quiet: float = 0.5, timeout: float = 15.0) -> dict[str, bytes]:
        """The retained set: a marker this client publishes comes back after everything the broker queued
        for it before (one client's packets are handled in order), then at most `quiet` more seconds while
        messages still trickle in (a NATS cluster need not keep that order); `timeout` caps it all."""
        marker = f"{SYNC}/{uuid.uuid4().hex}"
        deadline = time.monotonic() + timeout
        subscribe(self.client, [marker])
        self.client.publish(marker, b"sync", qos=1)
        with self.cond:
            if not self.cond.wait_for(lambda: marker in self.markers, timeout):
                raise TimeoutError(f"the broker did not return this client's marker on {SYNC}/ within {timeout:g} s: "
                                   "the view may be incomplete (may the user read and write _fleet/#?)")
            end = min(time.monotonic() + quiet, deadline)
            while True:
                now = time.monotonic()
                gap = self.last_arrival + min(quiet, 0.1) - now  # a short lull after the marker: done
                if now >= end or gap <= 0:
                    return dict(self.latest)
                self.cond.wait(min(gap, end - now))

    def wait_for(self, predicate: Callable[[dict[str, bytes]], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.latest), timeout)

    def snapshot(self) -> dict[str, bytes]:
        with self.cond:
            return dict(self.latest)

    def publish(self, topic: str, payload: bytes, retain: bool = False, timeout: float = 10.0) -> None:
        """QoS 1, waiting for the broker's PUBACK; TimeoutError if it does not come."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic} not acknowledged within {timeout:g} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def device_filters(prefix: str) -> list[str]:
    return [f"{prefix}/+/{t}" for t in DEVICE_TOPICS]
