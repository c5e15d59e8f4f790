"""`cmd/<action>` -> the handler that owns the change, and one `cmd/<action>/result` per command.

The MQTT link only moves bytes; this dispatcher parses a command, routes it by its action to the
handler registered for it and answers with the handler's fields (Frigate keeps its dispatcher
apart from its MQTT client the same way). It knows no pipeline kind: each kind registers its own
commands (`PipelineKind.commands`: `threshold`, `calibrate`, `capture`, its part of `reset`) and
gets the live pipelines of that kind; other owners register theirs (`selftest`, the updater's
`rollback` and `promote`); `reload` is the agent's. A command that cannot be carried out changes
nothing and is answered with `ok: false` and the reason.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from typing import Any

from edge import numbers
from edge.fields import build
from edge.models.manifest import ManifestError
from edge.mqtt import messages
from edge.mqtt.messages import Topics, request_id
from edge.pipelines.base import Pipeline
from edge.pipelines.registry import Arguments, Command

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_COMMAND_BYTES = 64 * 1024
MAX_ID_SCAN = 1 << 20  # the most of a refused command read to find the id its answer echoes


class CommandError(ValueError):
    """A command that cannot be carried out; the message says why."""


class Commands:
    """Routes each `cmd/<action>` to its handler; counts what it refuses."""

    def __init__(self, topics: Topics, device: str, send: Callable[[messages.Message], None],
                 pipelines: Callable[[], Iterable[Pipeline]], reload: Callable[[], dict[str, Any]],
                 queue_size: int = 1000) -> None:
        self.topics, self.device, self.send = topics, device, send
        self.pipelines = pipelines
        self.refused = 0  # refused by the command thread (unreadable, unknown, invalid arguments)
        self.busy = 0  # refused by the network thread: the queue was full (two counters: one writer each)
        self.queue: queue.Queue[tuple[str | None, bytes, Callable[[], None] | None]] = queue.Queue(maxsize=queue_size)
        self.thread = threading.Thread(target=self._work, name="commands", daemon=True)
        self.handlers: dict[str, tuple[Handler, type[Arguments] | None]] = {}
        self.kind_handlers: dict[str, dict[str, Command]] = {}  # action -> kind -> handler
        self.register("reload", lambda _body: reload())

    @property
    def invalid(self) -> int:
        """Commands refused, for `stats.invalid_commands`: also those refused because the queue was full."""
        return self.refused + self.busy

    def register(self, action: str, handler: Handler, arguments: type[Arguments] | None = Arguments) -> None:
        """A command another module owns (`edge.selftest`, the updater's `rollback` and `promote`). Its body is
        checked against `arguments` first (default: `id` only; None: the handler parses it itself). Its result
        may carry `ok` and `error` of its own: a self-test that ran and found a fault answers `ok: false`
        with the reason."""
        if action in self.handlers or action in self.kind_handlers:
            raise ValueError(f"command {action!r} is already registered")
        self.handlers[action] = (handler, arguments)

    def register_kind(self, kind: str, commands: dict[str, Command]) -> None:
        """A pipeline kind's commands (`PipelineKind.commands`), each called with the body and the live
        pipelines of that kind. An action several kinds register (`reset`) goes to the kind the body names."""
        for action, handler in commands.items():
            if action in self.handlers or kind in self.kind_handlers.get(action, {}):
                raise ValueError(f"command {action!r} is already registered")
            self.kind_handlers.setdefault(action, {})[kind] = handler

    def on_message(self, topic: str, payload: bytes, ack: Callable[[], None] | None = None) -> None:
        """The link's handler for `cmd/+`: queued for the command thread, never run on the network thread.

        A command takes a pipeline's lock (a reload waits for the reading in hand), and a pipeline's
        worker may need the link's I/O lock to publish a QoS 0 state: run here, the two would wait
        for each other for good. The PUBACK goes out once the result is in the outbox.
        """
        try:
            self.queue.put_nowait((topic, payload, ack))
        except queue.Full:
            self._refuse_busy(topic, payload, ack)

    def _refuse_busy(self, topic: str, payload: bytes, ack: Callable[[], None] | None) -> None:
        """A command the full queue cannot take: answered now, on the network thread, like any refused command
        (`ok: false`, the reason, the request's `id` when it can be read) and counted; then acknowledged.

        Sending from here is safe: a QoS 1 message only goes into the outbox (the inbox reports `error` from this
        thread the same way); the I/O lock this thread holds is taken before the outbox's, as everywhere. The id is
        read from at most MAX_COMMAND_BYTES (a longer command would be refused anyway, and this thread must not
        scan a megabyte). The answer is `diagnostic`: a flood of commands never evicts an alert from the outbox.
        """
        self.busy += 1
        waiting = self.queue.qsize()
        reason = f"busy: {waiting} command{'s' if waiting != 1 else ''} already waiting, try again"
        log.warning("command %s refused: %s", topic, reason)
        echo = request_id(read_id(payload)) if len(payload) <= MAX_COMMAND_BYTES else None
        try:
            self.send(messages.command_result(self.topics, self.device, topic.rsplit("/", 1)[-1], ok=False,
                                              request_id=echo, error_text=reason, diagnostic=True))
        except (OSError, sqlite3.Error) as exc:  # the disk refuses the outbox: the refusal is logged, not lost
            log.error("command %s: the busy answer could not be stored (%s)", topic, exc)
        finally:
            if ack is not None:
                ack()

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.queue.put((None, b"", None))
        self.thread.join(timeout)

    def _work(self) -> None:
        while True:
            topic, payload, ack = self.queue.get()
            if topic is None:
                return
            try:
                self.handle(topic.rsplit("/", 1)[-1], payload)
            except Exception:  # noqa: BLE001 - the command thread must outlive any one command
                log.exception("command on %s failed", topic)
            finally:
                if ack is not None:
                    ack()

    def handle(self, action: str, payload: bytes) -> None:
        echo, body = None, None
        try:
            body = self._parse(payload)
            echo = request_id(body.get("id"))
            if body.get("id") is not None and echo is None:
                raise CommandError("id must be a string of at most 128 characters or a finite number (an integer "
                                   "within ±9.2e18, as JSON readers hold it) -- the result could not be matched to "
                                   "its request")
            extra = dict(self._run(action, body) or {})
            ok, error_text = bool(extra.pop("ok", True)), extra.pop("error", None)
            result = messages.command_result(self.topics, self.device, action, ok=ok, request_id=echo,
                                             error_text=error_text, **extra)
        except (ValueError, KeyError, TypeError, ManifestError, RecursionError, OSError) as exc:
            self.refused += 1
            if body is None:  # refused unread (a NaN, 5,000 brackets, its size): its id, if it has one, goes back
                echo = request_id(read_id(payload))
            reason = _reason(exc)
            log.warning("command %s refused: %s", action, reason)
            result = messages.command_result(self.topics, self.device, action, ok=False, request_id=echo,
                                             error_text=reason)
        self.send(result)

    @staticmethod
    def _parse(payload: bytes) -> dict[str, Any]:
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandError(f"command of {len(payload)} bytes is larger than {MAX_COMMAND_BYTES}")
        if not payload.strip():  # what clearing a retained command delivers: it must not run the command
            raise CommandError('an empty command does nothing: send a JSON object, e.g. {"id": "r1"}')
        body = numbers.loads(payload.decode("utf-8"))  # every number bounded: a huge one is refused, said
        if not isinstance(body, dict):
            raise CommandError("expected a JSON object")
        return body

    def _run(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if action in self.handlers:
            handler, arguments = self.handlers[action]
            if arguments is not None:
                build(arguments, body)  # unknown keys, types, ranges: refused before anything runs (the keys
                # named as the sender wrote them: `threshold`, not `threshold.threshold`)
            return handler(body)
        by_kind = self.kind_handlers.get(action)
        if not by_kind:
            raise CommandError(f"unknown command {action!r} ({', '.join([*self.handlers, *self.kind_handlers])})")
        kind = _kind_named(action, by_kind, body)
        command = by_kind[kind]
        return command.handler(build(command.arguments, body), [p for p in self.pipelines() if p.kind == kind])


def read_id(payload: bytes) -> str | int | float | None:
    """The `id` of a command `_parse` refused, read without its bounds (`numbers.field`): the request a refusal
    answers. None for a payload that is not a JSON object (not UTF-8, not JSON, a list) or is over MAX_ID_SCAN
    bytes (scanning is linear, and this runs for every refused command: 1 MiB is ~0.4 s on a laptop)."""
    if len(payload) > MAX_ID_SCAN:
        return None
    try:
        return numbers.field(payload.decode("utf-8"), "id")
    except UnicodeDecodeError:
        return None


def _kind_named(action: str, by_kind: dict[str, Command], body: dict[str, Any]) -> str:
    """The kind a command is for: the one whose section the body names (`{"series": ...}`), or the only one
    that has the action. What to reset must be named: a reset wipes state that took hours of readings to
    build, so `{}` or `{"id": ...}` alone (a mistake, or a cleared retained command) resets nothing."""
    named = [kind for kind in by_kind if kind in body]
    if len(named) > 1:
        raise CommandError(f"one {action} at a time: name {' or '.join(f'a {k}' for k in named)}, not both")
    if named:
        return named[0]
    if len(by_kind) > 1:
        raise CommandError(f"name what to {action}: " + " or ".join(f'{{"{k}": "<name>"}}' for k in by_kind))
    return next(iter(by_kind))


def _reason(exc: BaseException) -> str:
    """One sentence for the result's `error`, not a Python exception's repr."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} at character {exc.pos}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
