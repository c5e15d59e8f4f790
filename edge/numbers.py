"""One bounded parse for every number that comes in: over MQTT (readings, commands) or from a file (state, manifest).

Why one place: Python turns a JSON integer of any length into an `int` (over 4,300 digits that is a
`ValueError` from the interpreter's own limit, and `float()` of a 400-digit one an `OverflowError`),
`json.loads` reads `NaN` and `Infinity`, and `1e400` becomes `inf`. Each of those, met deep in a
pipeline, was a traceback. Here every number is bounded while it is parsed: at most `MAX_DIGITS`
digits, finite, and -- for what a model computes with -- inside the float32 range. A refusal is a
`NumberError` (a `ValueError`) whose message is in the sender's own numbers ("1e+300 is beyond the
float32 range (±3.4e38)"), never a numpy repr.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DIGITS = 300  # 1e308 is the largest float: a longer number is no measurement, time or setting
FLOAT32_MAX = 3.4028234663852886e38
MAX_DEPTH_NOTE = "nested too deeply"


class NumberError(ValueError):
    """A number that cannot be taken; the message names it as the sender wrote it."""


def excerpt(text: str) -> str:
    """A long number shortened for a message: its first digits, its length."""
    return text if len(text) <= 24 else f"{text[:12]}...{text[-4:]} ({len(text)} characters)"


def _int(text: str) -> int:
    digits = len(text.lstrip("+-"))
    if digits > MAX_DIGITS:
        raise NumberError(f"the integer {excerpt(text)} has {digits} digits; at most {MAX_DIGITS} are accepted")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_DIGITS + 8:
        raise NumberError(f"the number {excerpt(text)} is longer than {MAX_DIGITS + 8} characters")
    value = float(text)
    if not math.isfinite(value):
        raise NumberError(f"{excerpt(text)} is beyond the range of a number (±1.8e308): NaN and infinity are refused")
    return value


class RepeatedKey(NumberError):
    """An object naming one key twice. `json.loads` keeps the last silently, so `{"sensor": "a", ..., "sensor":
    "b"}` acted on `b` without a word (a user's trial), and a signed descriptor could mean one thing to this
    parser and another to a reader that keeps the first: refused wherever JSON comes in."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedKey(f"the key {excerpt(key)!r} appears twice in one object (which one was meant?)")
            seen.add(key)
    return data


def _constant(name: str) -> Any:
    raise NumberError(f"{name} is not a number edgepipe accepts (NaN and infinity are refused)")


def loads(text: str | bytes) -> Any:
    """`json.loads` with every number bounded (see the module doc) and no key twice in an object (`RepeatedKey`).

    Raises `json.JSONDecodeError` for text that is not JSON and `NumberError` for a number out of
    bounds or nesting too deep to parse (both `ValueError`)."""
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant, object_pairs_hook=_object)
    except RecursionError:
        raise NumberError(MAX_DEPTH_NOTE) from None


def show(value: Any) -> str:
    """A number as the sender would write it (1e+300, 12), bounded in length."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 1000:
            return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
        return excerpt(str(value))
    if isinstance(value, float):
        return repr(value)
    return excerpt(str(value)[:60])


def finite(value: Any, where: str, *, float32: bool = False) -> float:
    """A parsed JSON/TOML value as a finite float, or `NumberError` naming `where` and the value.

    `float32`: inside ±3.4e38, what a model's tensors hold (a reading, a threshold)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NumberError(f"{where} is {type(value).__name__} {show(value)!r}, expected a number")
    if isinstance(value, int) and value.bit_length() > 1024:
        raise NumberError(f"{where} is {show(value)}, beyond the range of a number (±1.8e308)")
    number = float(value)
    if not math.isfinite(number):
        raise NumberError(f"{where} is {show(value)}; NaN and infinity are refused")
    if float32 and abs(number) > FLOAT32_MAX:
        raise NumberError(f"{where} is {show(value)}, beyond the float32 range (±3.4e38) the models compute in")
    return number


def from_text(text: str, where: str) -> float:
    """A number written as text (a CSV cell), bounded like JSON's; `NumberError` when it is not one."""
    cell = text.strip()
    if len(cell) > MAX_DIGITS + 8:
        raise NumberError(f"{where} is {excerpt(cell)}, longer than {MAX_DIGITS + 8} characters")
    try:
        number = float(cell)
    except ValueError:
        raise NumberError(f"{where} is {cell[:40]!r}, expected a number") from None
    return finite(number, where)


# --- one field of a text `loads` refused -------------------------------------------------------------------------
# A string, a number or literal (kept as text: never converted here), or one of the six marks of JSON.
_TOKEN = re.compile(r'[ \t\n\r]*(?:("(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")'
                    r'|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null|NaN|-?Infinity)'
                    r'|([][{}:,]))')
_SPACE = " \t\n\r"
_CLOSE = {"{": "}", "[": "]"}


def field(text: str, key: str) -> str | int | float | None:
    """The top-level `key` of a JSON object that `loads` refused for a number or its depth, when it is a string or
    a number `loads` would take; None for any other value, no such key, or text that is not a JSON object.

    Why: a command refused for `NaN` or 5,000 brackets is still answered with its request's `id`, so the sender
    can match the refusal. Read without recursion (the nesting is a list) and without converting a number it
    passes over (each is a token of text), so nothing that made `loads` refuse can make this fail."""
    token = _top_level_token(text, key)
    try:
        value = loads(token) if token is not None else None
    except ValueError:  # the value itself out of bounds (`"id": NaN`)
        return None
    return value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None


def _top_level_token(text: str, key: str) -> str | None:
    """The JSON text of the last `key` of the object `text` is (a string, number or literal; None for a container),
    or None when `text` is not exactly one JSON object."""
    if not text.lstrip(_SPACE).startswith("{"):
        return None
    stack: list[str] = []
    expect, name, found, pos = "value", None, None, 0  # expect: value, value], key, key}, :, next
    while True:
        match = _TOKEN.match(text, pos)
        if match is None:
            return None
        pos, (string, scalar, mark) = match.end(), match.groups()
        if expect == ":" or expect == "next" and mark == ",":
            if mark != (":" if expect == ":" else ","):
                return None
            expect = "value" if expect == ":" or stack[-1] == "[" else "key"
        elif mark in ("}", "]"):
            if (expect, mark) not in (("next", _CLOSE[stack[-1]]), ("key}", "}"), ("value]", "]")):
                return None
            stack.pop()
            if not stack:
                return found if not text[pos:].strip(_SPACE) else None
            expect = "next"
        elif expect in ("key", "key}"):
            if string is None:
                return None
            name, expect = (loads(string) if len(stack) == 1 else None), ":"
        elif expect in ("value", "value]") and mark in (None, "{", "["):
            if len(stack) == 1 and name == key:
                found = string if string is not None else scalar  # None: the value is an object or a list
            if mark is None:
                expect = "next"
            else:
                stack.append(mark)
                expect = "key}" if mark == "{" else "value]"
        else:  # a string or a value where a comma or a closing mark belongs, a comma where a value belongs
            return None
