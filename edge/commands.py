"""`cmd/<action>` -> the pipeline method that owns the change, and one `cmd/<action>/result` per command.

The MQTT link only moves bytes; this dispatcher parses a command, finds the pipeline(s) it
is for and calls the method that changes them under their own lock (Frigate keeps its
dispatcher apart from its MQTT client the same way). A command that cannot be carried out
changes nothing and is answered with `ok: false` and the reason.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

from edge.models.manifest import ManifestError
from edge.mqtt import messages
from edge.mqtt.messages import Topics
from edge.pipelines.base import Pipeline

log = logging.getLogger(__name__)
MAX_COMMAND_BYTES = 64 * 1024


class CommandError(ValueError):
    """A command that cannot be carried out; the message says why."""


class Commands:
    """Routes `reset`, `threshold` and `reload` to the pipelines; counts what it refuses."""

    def __init__(self, topics: Topics, device: str, send: Callable[[messages.Message], None],
                 pipelines: Callable[[], Iterable[Pipeline]], reload: Callable[[], dict[str, Any]]) -> None:
        self.topics, self.device, self.send = topics, device, send
        self.pipelines, self.reload = pipelines, reload
        self.invalid = 0
        self.queue: queue.Queue[tuple[str | None, bytes, Callable[[], None] | None]] = queue.Queue(maxsize=1000)
        self.thread = threading.Thread(target=self._work, name="commands", daemon=True)
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "reset": self.reset, "threshold": self.threshold, "reload": lambda _body: self.reload()}
        self.handlers["calibrate"] = self.calibrate

    def register(self, action: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """A command another module owns (`edge.selftest`, `edge.capture`, the updater's `rollback` and
        `promote`). Its result may carry `ok` and `error` of its own: a self-test that ran and found a
        fault answers `ok: false` with the reason."""
        if action in self.handlers:
            raise ValueError(f"command {action!r} is already registered")
        self.handlers[action] = handler

    def on_message(self, topic: str, payload: bytes, ack: Callable[[], None] | None = None) -> None:
        """The link's handler for `cmd/+`: queued for the command thread, never run on the network thread.

        A command takes a pipeline's lock (a reload waits for the reading in hand), and a pipeline's
        worker may need the link's I/O lock to publish a QoS 0 state: run here, the two would wait
        for each other for good. The PUBACK goes out once the result is in the outbox.
        """
        try:
            self.queue.put_nowait((topic, payload, ack))
        except queue.Full:
            self.invalid += 1
            log.warning("command %s refused: %d commands already waiting", topic, self.queue.qsize())
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
        request_id = None
        try:
            body = self._parse(payload)
            request_id = _request_id(body.get("id"))
            if body.get("id") is not None and request_id is None:
                raise CommandError("id must be a string of at most 128 characters or a finite number "
                                   "(the result could not be matched to its request)")
            handler = self.handlers.get(action)
            if handler is None:
                raise CommandError(f"unknown command {action!r} ({', '.join(self.handlers)})")
            extra = dict(handler(body) or {})
            ok, error_text = bool(extra.pop("ok", True)), extra.pop("error", None)
            result = messages.command_result(self.topics, self.device, action, ok=ok, request_id=request_id,
                                             error_text=error_text, **extra)
        except (ValueError, KeyError, TypeError, ManifestError, RecursionError, OSError) as exc:
            self.invalid += 1
            reason = _reason(exc)
            log.warning("command %s refused: %s", action, reason)
            result = messages.command_result(self.topics, self.device, action, ok=False, request_id=request_id,
                                             error_text=reason)
        self.send(result)

    @staticmethod
    def _parse(payload: bytes) -> dict[str, Any]:
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandError(f"command of {len(payload)} bytes is larger than {MAX_COMMAND_BYTES}")
        if not payload.strip():  # what clearing a retained command delivers: it must not run the command
            raise CommandError('an empty command does nothing: send a JSON object, e.g. {"id": "r1"}')
        body = json.loads(payload.decode("utf-8"))
        if not isinstance(body, dict):
            raise CommandError("expected a JSON object")
        return body

    def _named(self, kind: str, method: str, name: Any) -> list[Pipeline]:
        """The pipelines of `kind` a command is for: the one named, or all of them (name None)."""
        have = {p.name: p for p in self.pipelines() if p.kind == kind and hasattr(p, method)}
        if name is None:
            return list(have.values())
        if name not in have:
            raise CommandError(f"no {kind} {name!r} (have {sorted(have)})")
        return [have[name]]

    def reset(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"series": name}` (`"*"`: every series) starts a forecaster afresh; `{"sensor": name}` drops a
        commanded threshold or calibration (the config's or the manifest's applies again).

        What to reset must be named: a reset wipes state that took hours of readings to build, so
        `{}` or `{"id": ...}` alone (a mistake, or a cleared retained command) resets nothing.
        """
        if "sensor" in body and "series" in body:
            raise CommandError("one reset at a time: name a series or a sensor, not both")
        if "sensor" in body:
            [sensor] = self._named("sensor", "reset", body["sensor"])
            return {"reset": [sensor.name], "sensor": sensor.name, **sensor.reset()}  # type: ignore[attr-defined]
        if "series" not in body:
            raise CommandError('name what to reset: {"series": "<name>"} ("*" for every series) '
                               'or {"sensor": "<name>"}')
        chosen = self._named("series", "reset", None if body["series"] == "*" else body["series"])
        for pipeline in chosen:
            pipeline.reset()  # type: ignore[attr-defined]
        return {"reset": [p.name for p in chosen]}

    def threshold(self, body: dict[str, Any]) -> dict[str, Any]:
        [pipeline] = self._named("sensor", "set_threshold", body["sensor"])
        return {"sensor": pipeline.name, **pipeline.set_threshold(body["threshold"])}  # type: ignore[attr-defined]

    def calibrate(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"sensor": name, "readings": N}` or `{"sensor": name, "seconds": S}`: the next readings are normal;
        answered now (`state: collecting`) and again by the sensor when the plan is fitted (`done`/`failed`)."""
        if "sensor" not in body:
            raise CommandError('calibrate: name the sensor ({"sensor": name, "readings": N})')
        [pipeline] = self._named("sensor", "calibrate", body["sensor"])
        return pipeline.calibrate(body, _request_id(body.get("id")))  # type: ignore[attr-defined]


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


def _request_id(value: Any) -> str | int | float | None:
    """The `id` a result echoes, as the schema allows: a string (at most 128 characters) or a finite
    number; anything else (an object, a list, NaN) is not echoed rather than breaking the schema."""
    if isinstance(value, str):
        return value if len(value) <= 128 else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) < 2**63 or isinstance(value, float) and math.isfinite(value):
        return value
    return None
