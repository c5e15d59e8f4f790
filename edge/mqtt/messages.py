"""The messages every agent sends, whatever it runs, built by pure functions (topic, payload, QoS, retain):
the envelope, `status`, `error`, `cmd/<action>/result` and `stats`. Each pipeline kind builds its own
payloads beside its discovery (`edge.pipelines.<kind>.messages`) with the same envelope.

Building is separate from sending (one place, `edge.mqtt.link`), so topics and payloads are
tested without a broker and against the JSON Schemas in `schemas/`. Every JSON payload
carries `v` (schema version), `ts` (UTC ISO 8601), `device` and, where a model produced
it, `model` (name and short sha256). QoS 1 payloads carry a unique `id` so subscribers
can drop the duplicates that at-least-once delivery allows.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1
ONLINE, OFFLINE = b"online", b"offline"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    diagnostic: bool = False  # an error report: in a full outbox it gives way before any alert


@dataclass(frozen=True)
class Topics:
    """The topic layout under one device's base topic; each pipeline kind names its own levels."""

    base: str

    def path(self, *levels: str) -> str:
        return "/".join((self.base, *levels))

    status = property(lambda self: self.path("status"))
    stats = property(lambda self: self.path("stats"))
    error = property(lambda self: self.path("error"))

    def command(self, action: str) -> str:
        return self.path("cmd", action)

    def command_result(self, action: str) -> str:
        return self.path("cmd", action, "result")


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # one encoder: json.dumps builds one a call


def _json(data: dict[str, Any], figures: bool = False) -> bytes:
    """`figures`: the payload carries computed figures (`stats`, a command's result), and one that came out
    infinite or NaN (a ratio that overflowed) goes out as null rather than failing the whole message, which JSON
    cannot carry: a bad figure never silences stats. Without it (an alert: its score and threshold exact) a
    non-finite number is a ValueError, as before."""
    try:
        return ENCODER.encode(data).encode()
    except ValueError:
        if not figures:
            raise
        return ENCODER.encode(finite_figures(data)).encode()


def finite_figures(value: Any) -> Any:
    """`value` with every infinite or NaN float, at any depth, replaced by None (JSON null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_figures(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_figures(item) for item in value]
    return value


def envelope(device: str, model: dict[str, str] | None = None, qos1: bool = False, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"v": SCHEMA_VERSION, "ts": utc_now(), "device": device}
    if model is not None:
        data["model"] = model
    if qos1:
        data["id"] = uuid.uuid4().hex
    data.update(fields)
    return data


def status(topics: Topics, online: bool) -> Message:
    """Plain `online`/`offline`, retained; the same topic is the Last Will."""
    return Message(topics.status, ONLINE if online else OFFLINE, qos=1, retain=True)


def error(topics: Topics, device: str, *, component: str, reason: str, input_excerpt: str | None = None,
          repeated: int = 0, held_back: list[dict[str, Any]] | None = None) -> Message:
    fields: dict[str, Any] = {"component": component, "reason": reason}
    if input_excerpt is not None:
        fields["input"] = input_excerpt
    if repeated:
        fields["repeated"] = repeated
    if held_back:
        fields["held_back"] = held_back
    return Message(topics.error, _json(envelope(device, qos1=True, **fields)), qos=1, diagnostic=True)


def command_result(topics: Topics, device: str, action: str, *, ok: bool, request_id: str | None,
                   error_text: str | None = None, diagnostic: bool = False, **extra: Any) -> Message:
    """`diagnostic`: gives way before alerts in a full outbox (a refusal for a full command queue)."""
    fields = {"action": action, "ok": ok, "error": error_text, "request_id": request_id, **extra}
    return Message(topics.command_result(action), _json(envelope(device, qos1=True, **fields), figures=True), qos=1,
                   diagnostic=diagnostic)


def stats(topics: Topics, device: str, data: dict[str, Any]) -> Message:
    return Message(topics.stats, _json(envelope(device, **data), figures=True), qos=0, retain=True)


def request_id(value: Any) -> str | int | float | None:
    """The `id` a command result echoes, as the schema allows: a string (at most 128 characters) or a finite
    number; anything else (an object, a list, NaN) is not echoed rather than breaking the schema."""
    if isinstance(value, str):
        return value if len(value) <= 128 else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) < 2**63 or isinstance(value, float) and math.isfinite(value):
        return value
    return None


def excerpt(payload: bytes, limit: int = 200) -> str:
    """A printable, bounded piece of a bad input for the `error` topic."""
    text = payload[:limit].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > limit else "")
