"""Every MQTT message the agent sends, built by pure functions (topic, payload, QoS, retain).

Building is separate from sending (one place, `edge.mqtt`), so topics and payloads are
tested without a broker and against the JSON Schemas in `schemas/`. Every JSON payload
carries `v` (schema version), `ts` (UTC ISO 8601), `device` and, where a model produced
it, `model` (name and short sha256). QoS 1 payloads carry a unique `id` so subscribers
can drop the duplicates that at-least-once delivery allows.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1
ONLINE, OFFLINE = b"online", b"offline"
ON, OFF = b"ON", b"OFF"


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


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # one encoder: json.dumps builds one a call


def _json(data: dict[str, Any]) -> bytes:
    return _ENCODER.encode(data).encode()


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


def classification(topics: Topics, device: str, model: dict[str, str], camera: str, *, label: str, index: int,
                   score: float, top_k: list[dict[str, Any]], seq: int, latency_ms: float,
                   truth: str | None = None) -> Message:
    """The one message sent for every camera frame, so it is built without a dict and an encoder pass.

    The constant part (version, device, model, camera) is encoded once per camera and cached;
    strings still go through the JSON encoder (cached: labels repeat), numbers are checked
    finite as `allow_nan=False` would. Half the time of `_json(envelope(...))`, which on 2 cores
    is worth a few points of the camera pipeline's frame rate (README, Benchmarks); the
    schema test and a test against the generic builder keep the two equal.
    """
    tops = ",".join(f'{{"label":{_json_str(t["label"])},"index":{int(t["index"])},"score":{_number(t["score"])}}}'
                    for t in top_k)
    extra = "" if truth is None else f',"truth":{_json_str(truth)}'
    body = (f'{_class_head(device, tuple(model.items()), camera)}{utc_now()}","label":{_json_str(label)},'
            f'"index":{int(index)},"score":{_number(round(score, 5))},"top_k":[{tops}],"seq":{int(seq)},'
            f'"latency_ms":{_number(round(latency_ms, 3))}{extra}}}')
    return Message(topics.path("vision", camera, "class"), body.encode(), qos=0)


@functools.lru_cache(maxsize=64)
def _class_head(device: str, model: tuple[tuple[str, str], ...], camera: str) -> str:
    return (f'{{"v":{SCHEMA_VERSION},"device":{_json_str(device)},"model":{_ENCODER.encode(dict(model))},'
            f'"camera":{_json_str(camera)},"ts":"')


@functools.lru_cache(maxsize=1024)
def _json_str(text: str) -> str:
    return _ENCODER.encode(text)


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"out of range float value {value!r} is not JSON compliant")
    return repr(float(value))


def anomaly(topics: Topics, device: str, model: dict[str, str], sensor: str, *, score: float, threshold: float,
            is_anomaly: bool, values: list[float], window: int, seq: int, changed: bool,
            reading_ts: Any = None) -> Message:
    fields = {"sensor": sensor, "score": score, "threshold": threshold, "is_anomaly": is_anomaly,
              "values": values, "window": window, "seq": seq, "changed": changed, "reading_ts": reading_ts}
    payload = _json(envelope(device, model, qos1=True, **fields))
    return Message(topics.path("sensors", sensor, "anomaly"), payload, qos=1)


def sensor_state(topics: Topics, sensor: str, active: bool) -> Message:
    """A sensor's current state, plain `ON`/`OFF`, retained: what its Home Assistant binary sensor shows,
    known from the agent's start on (not only from the first anomaly).

    QoS 0, not through the outbox: it is a value, not an event. One missed while offline is
    replaced by the current one at the next connect; queued, it would take the place of an alert.
    """
    return Message(topics.path("sensors", sensor, "state"), ON if active else OFF, qos=0, retain=True)


def forecast(topics: Topics, device: str, model: dict[str, str], series: str, *, observed: float,
             forecast_value: float, step: int, reading_ts: Any = None) -> Message:
    fields = {"series": series, "observed": observed, "forecast": forecast_value, "step": step,
              "reading_ts": reading_ts}
    return Message(topics.path("forecast", series), _json(envelope(device, model, qos1=True, **fields)), qos=1)


def error(topics: Topics, device: str, *, component: str, reason: str, input_excerpt: str | None = None,
          repeated: int = 0) -> Message:
    fields: dict[str, Any] = {"component": component, "reason": reason}
    if input_excerpt is not None:
        fields["input"] = input_excerpt
    if repeated:
        fields["repeated"] = repeated
    return Message(topics.error, _json(envelope(device, qos1=True, **fields)), qos=1, diagnostic=True)


def command_result(topics: Topics, device: str, action: str, *, ok: bool, request_id: str | None,
                   error_text: str | None = None, **extra: Any) -> Message:
    fields = {"action": action, "ok": ok, "error": error_text, "request_id": request_id, **extra}
    return Message(topics.command_result(action), _json(envelope(device, qos1=True, **fields)), qos=1)


def stats(topics: Topics, device: str, data: dict[str, Any]) -> Message:
    return Message(topics.stats, _json(envelope(device, **data)), qos=0, retain=True)


def excerpt(payload: bytes, limit: int = 200) -> str:
    """A printable, bounded piece of a bad input for the `error` topic."""
    text = payload[:limit].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > limit else "")
