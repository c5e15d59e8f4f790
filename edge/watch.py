"""`python -m edge subscribe`: one readable line per message, for a person watching the broker.

A watcher is pointed at whatever the broker carries, so it must outlive anything on the wire:
a payload that is not what its topic promises is printed raw (bounded, control characters
escaped) instead of ending the program; a QoS 1 message seen again (same `id`, at-least-once
delivery) is printed once. It connects as the agent can (TLS with a CA file, a user name), takes
its password from a file or the environment so that it never shows in `ps`, and says in one line
on stderr, with exit code 2, why it cannot connect (refused, unknown host, TLS, no CONNACK).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edge.mqtt.messages import excerpt
from edge.numbers import loads
from edge.pipelines.registry import kinds

log = logging.getLogger(__name__)

PASSWORD_ENV = "EDGEPIPE_MQTT_PASSWORD"
EXIT_CANNOT_CONNECT = 2
KEEP_IDS = 10000  # ids remembered for dropping repeats


class WatchError(Exception):
    """The watcher cannot start or connect; the message is the one line the user sees."""


@dataclass
class WatchOptions:
    host: str = "localhost"
    port: int | None = None  # None: 1883, or 8883 with TLS
    base: str = "edgepipe/+"
    username: str | None = None
    password: str | None = None  # discouraged: visible in `ps`; see `password_file` and PASSWORD_ENV
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None  # implies TLS
    count: int | None = None
    json: bool = False
    timeout: float = 10.0  # seconds to wait for the broker's CONNACK

    @property
    def use_tls(self) -> bool:
        return self.tls or self.ca_file is not None

    @property
    def broker_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.use_tls else 1883)


def resolve_password(options: WatchOptions, environ: dict[str, str] | None = None) -> str | None:
    """`--password-file` (its first line), else $EDGEPIPE_MQTT_PASSWORD, else `--password`."""
    environ = os.environ if environ is None else environ
    if options.password_file is not None:
        try:
            text = options.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WatchError(f"cannot read the password file {options.password_file}: {exc}") from None
        return text.splitlines()[0] if text else ""
    if environ.get(PASSWORD_ENV) is not None:
        return environ[PASSWORD_ENV]
    return options.password


def printable(text: str) -> str:
    """Control characters escaped: a payload must not drive the terminal (colours, cursor, title)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def describe(topic: str, payload: bytes) -> str:
    """One readable line for a person watching the broker; the raw payload when it does not parse."""
    try:
        line = _describe(topic, payload)
    except Exception:  # noqa: BLE001 - anything on the wire (deep nesting, huge numbers, wrong types)
        line = f"{topic}: {excerpt(payload, 500)}"
    return printable(line)


def _describe(topic: str, payload: bytes) -> str:
    """Each pipeline kind describes its own messages (`PipelineKind.describe`); the rest is the agent's."""
    try:
        data = loads(payload.decode("utf-8", "replace"))
    except ValueError:  # not JSON, or a number or a depth the agent itself would refuse: shown as it came
        data = None
    data = data if isinstance(data, dict) else None
    for kind in kinds().values():
        if kind.describe is not None and (line := kind.describe(topic, payload, data)) is not None:
            return line
    if data is None:
        return f"{topic}: {excerpt(payload, 500)}"
    ts = str(data.get("ts", ""))[11:19]
    if topic.endswith("/error"):
        return f"{ts} ERROR {data.get('component')}: {data.get('reason')}"
    if "/cmd/" in topic and topic.endswith("/result"):
        return f"{ts} command {data.get('action')}: {'ok' if data.get('ok') else 'failed: ' + str(data.get('error'))}"
    if topic.endswith("/stats"):
        return f"{ts} stats: up {data.get('uptime_s')} s, outbox {data.get('outbox_depth')}{burn_ins(data)}"
    return f"{topic}: {excerpt(payload, 500)}"


def burn_ins(stats: dict) -> str:
    """The pipelines still learning their alert rule (`stats.quality.<pipeline>.burn_in`), with how far: a
    sensor that raises nothing while it burns in must not look deaf to the person watching."""
    quality = stats.get("quality")
    learning = [f"{name} burning in {b.get('readings')}/{b.get('needed')} readings"
                for name, q in (quality.items() if isinstance(quality, dict) else ())
                if isinstance(q, dict) and isinstance(b := q.get("burn_in"), dict)]
    return "; " + ", ".join(learning) if learning else ""


class Repeats:
    """The `id`s of the last KEEP_IDS QoS 1 messages: at-least-once delivery may bring one twice."""

    def __init__(self, keep: int = KEEP_IDS) -> None:
        self.keep = keep
        self.seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __call__(self, payload: bytes) -> bool:
        """True if this payload's `id` was seen already (payloads without a string `id` never are)."""
        try:
            message_id = loads(payload).get("id")
        except Exception:  # noqa: BLE001 - not JSON, not an object, nested too deep: not a repeat
            return False
        if not isinstance(message_id, str):
            return False
        if message_id in self.seen:
            return True
        self.seen[message_id] = None
        if len(self.seen) > self.keep:
            self.seen.popitem(last=False)
        return False


class Watcher:
    """Subscribes to `<base>/#` and prints each new message; `done` is set at `count` or on refusal."""

    def __init__(self, options: WatchOptions, out: TextIO = sys.stdout) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.options, self.out = options, out
        self.printed = 0
        self.refused: str | None = None
        self.connected = threading.Event()
        self.answered = threading.Event()  # a CONNACK, or the connection closed before one
        self.done = threading.Event()
        self.repeats = Repeats()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        password = resolve_password(options)
        if options.username:
            self.client.username_pw_set(options.username, password)
        if options.use_tls:
            try:
                self.client.tls_set(ca_certs=str(options.ca_file) if options.ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise WatchError(f"cannot use the CA file {options.ca_file}: {exc}") from None
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(1, 30)

    @property
    def where(self) -> str:
        return f"{self.options.host}:{self.options.broker_port}"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.refused = f"the broker at {self.where} refused the connection: {reason}"
            self.answered.set()
            self.done.set()
            return
        client.subscribe(f"{self.options.base}/#", qos=1)
        self.connected.set()
        self.answered.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        """One line on stderr once messages can arrive: a person (or a script) knows it is listening."""
        failed = [r for r in reasons if r.is_failure]
        state = f"refused ({failed[0]}): nothing will arrive" if failed else "watching"
        print(f"edgepipe subscribe: {state} {self.options.base}/# on {self.where}", file=sys.stderr, flush=True)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self.answered.is_set():
            hint = "" if self.options.use_tls else " (a TLS port? try --tls --ca-file)"
            self.refused = f"{self.where} closed the connection without an MQTT answer{hint}"
            self.answered.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        """Never raises: paho's loop thread would end silently, and the watcher with it."""
        try:
            if self.done.is_set():  # `count` reached: messages still arriving before the disconnect are not printed
                return
            if self.repeats(msg.payload):
                return
            if self.options.json:
                line = json.dumps({"topic": msg.topic, "payload": msg.payload.decode("utf-8", "replace")})
            else:
                line = describe(msg.topic, msg.payload)
            print(line, file=self.out, flush=True)
        except BrokenPipeError:  # `... | head`: the reader has gone
            self.done.set()
            return
        except Exception:  # noqa: BLE001 - a bug here must not end the watcher; say so and go on
            log.exception("could not print a message on %s", msg.topic)
            return
        self.printed += 1
        if self.options.count and self.printed >= self.options.count:
            self.done.set()

    def connect(self) -> None:
        """Connect and wait for the CONNACK; WatchError with one line on any failure."""
        try:
            self.client.connect(self.options.host, self.options.broker_port)
        except socket.gaierror as exc:
            raise WatchError(f"cannot connect to {self.where}: unknown host ({exc.strerror})") from None
        except ssl.SSLError as exc:
            raise WatchError(f"cannot connect to {self.where}: TLS failed ({exc}); "
                             "is --ca-file the CA that signed the broker's certificate?") from None
        except (OSError, ValueError) as exc:
            raise WatchError(f"cannot connect to {self.where}: {getattr(exc, 'strerror', None) or exc}") from None
        self.client.loop_start()
        if not self.answered.wait(self.options.timeout) or self.refused:
            self.client.loop_stop()
            raise WatchError(self.refused or f"no answer from an MQTT broker at {self.where} in "
                             f"{self.options.timeout:.0f} s" + ("" if self.options.use_tls else
                                                                 " (a TLS port? try --tls --ca-file)"))

    def run(self) -> None:
        """Until `count` messages, a refusal or Ctrl-C."""
        try:
            while not self.done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.client.disconnect()
            self.client.loop_stop()
        if self.refused:
            raise WatchError(self.refused)


def watch(options: WatchOptions) -> int:
    """The `subscribe` command: 0 after Ctrl-C or `count` messages, 2 with one line if it cannot connect."""
    try:
        watcher = Watcher(options)
        watcher.connect()
        watcher.run()
    except WatchError as exc:
        print(f"edgepipe subscribe: {exc}", file=sys.stderr)
        return EXIT_CANNOT_CONNECT
    return 0
