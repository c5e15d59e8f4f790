"""Parsing sensor and series readings from MQTT payloads, CSV lines or stdin.

Accepted: a JSON object `{"ts": ..., "seq": ..., "values": [...]}` (`ts`, `seq` optional), a
JSON array `[...]`, a single JSON number, or a CSV line `1.0,2.5`. Every number is bounded while it
is parsed (`edge.numbers`: digits, finiteness, float32 range) and `ts` follows `edge.timestamps`'
one rule. Anything else -- bytes that are not UTF-8, NaN or infinity, huge integers, the wrong
number of values, nested structures, oversized payloads -- raises
`InvalidReading` with a reason a person can act on; the agent counts it, reports it on
the `error` topic and keeps serving.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from typing import Any

from edge import numbers
from edge.timestamps import InvalidTime, checked

MAX_PAYLOAD_BYTES = 64 * 1024


class InvalidReading(ValueError):
    """A reading that cannot be used; the message says why."""


@dataclass(frozen=True)
class Reading:
    values: tuple[float, ...]
    ts: Any = None
    seq: int | None = None  # the sender's own counter, when it numbers its readings: gaps are losses


def _number(value: Any, where: str) -> float:
    try:
        return numbers.finite(value, where, float32=True)
    except numbers.NumberError as exc:
        raise InvalidReading(str(exc)) from None


def _timestamp(ts: Any) -> Any:
    """A reading's `ts` as given -- a time or a counter (`edge.timestamps.checked`) -- or InvalidReading."""
    try:
        return checked(ts)
    except InvalidTime as exc:
        raise InvalidReading(str(exc)) from None


def _parse_json(text: str) -> Reading:
    try:
        data = numbers.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidReading(f"not valid JSON ({exc})") from None
    except numbers.NumberError as exc:
        raise InvalidReading(str(exc)) from None
    ts = seq = None
    if isinstance(data, dict):
        if "values" not in data:
            raise InvalidReading(f"JSON object without 'values' (keys: {sorted(data)[:10]})")
        ts, seq, data = _timestamp(data.get("ts")), _sequence(data.get("seq")), data["values"]
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        data = [data]
    if not isinstance(data, list):
        raise InvalidReading(f"'values' is {type(data).__name__}, expected a list of numbers")
    return Reading(tuple(_number(v, f"value {i}") for i, v in enumerate(data)), ts, seq)


def _sequence(seq: Any) -> int | None:
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise InvalidReading(f"'seq' is {numbers.show(seq)!r}, expected a whole number >= 0 (the sender's counter)")
    return seq


def _parse_csv(text: str) -> Reading:
    cells = [c.strip() for c in text.strip().split(",")]
    values = []
    for i, cell in enumerate(cells):
        try:
            values.append(_number(numbers.from_text(cell, f"CSV cell {i}"), f"CSV cell {i}"))
        except numbers.NumberError as exc:
            raise InvalidReading(str(exc)) from None
    return Reading(tuple(values))


def parse_reading(payload: bytes | str, expected: int | None = None) -> Reading:
    """Parse one reading; `expected` is the number of values the model needs."""
    if isinstance(payload, bytes):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise InvalidReading(f"payload of {len(payload)} bytes is larger than {MAX_PAYLOAD_BYTES}")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidReading(f"payload is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    else:
        text = payload
    text = text.strip()
    if not text:
        raise InvalidReading("empty payload")
    reading = _parse_json(text) if text[0] in "[{" else _parse_csv(text)
    if not reading.values:
        raise InvalidReading("no values")
    if expected is not None and len(reading.values) != expected:
        raise InvalidReading(f"{len(reading.values)} values, the model expects {expected}")
    return reading


class Redeliveries:
    """The last `keep` readings handled that carried a `ts`, to tell a re-delivery from a new reading.

    Why: readings come at least once. One queued when the connection drops is delivered again on the new one
    (its ack is due only once handled), and a sensor scored it twice: a duplicate in the model's window, and a
    duplicate alert. A reading is a repeat when its `ts`, values and `seq` are all those of one handled
    before; without a `ts` two equal readings may both be real (a stuck sensor), so those always count.
    """

    def __init__(self, keep: int = 512) -> None:
        self._order: collections.deque[tuple] = collections.deque()
        self._keys: set[tuple] = set()
        self.keep = keep

    def repeat(self, reading: Reading) -> bool:
        """True for a reading seen before (skip it); else remembers it and returns False."""
        if reading.ts is None:
            return False
        key = (type(reading.ts).__name__, reading.ts, reading.values, reading.seq)
        if key in self._keys:
            return True
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self.keep:
            self._keys.discard(self._order.popleft())
        return False
