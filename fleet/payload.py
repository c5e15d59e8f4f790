"""One parse for what the devices leave retained: any client that may publish there may publish garbage.

`document()` reads a payload with `edge.numbers.loads` (bounded digits, depth, finiteness: `[[[...]]]`
a thousand deep is a refusal, not a RecursionError) and checks that it is a JSON object; `typed()` takes
one field of it with its type checked, `None` when absent. Both raise `Malformed("malformed <topic>:
<why>")`, which the views show as a device's problem instead of dropping the device or crashing.
"""

from __future__ import annotations

from typing import Any

from edge.numbers import loads

NUMBER = (int, float)


class Malformed(ValueError):
    """A retained payload that is not what its topic promises; the message names the topic and why."""


NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def _kind(value: Any) -> str:
    return "null" if value is None else NAMES.get(type(value), type(value).__name__)


def document(payload: bytes | None, topic: str) -> dict[str, Any] | None:
    """The JSON object in `payload`, None for no payload; Malformed for anything else."""
    if not payload:
        return None
    try:
        value = loads(payload)
    except ValueError as exc:  # JSONDecodeError, NumberError (digits, NaN, depth), UnicodeDecodeError
        raise Malformed(f"malformed {topic}: {str(exc)[:80]}") from None
    if not isinstance(value, dict):
        raise Malformed(f"malformed {topic}: {_kind(value)}, expected a JSON object")
    return value


def typed(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], topic: str) -> Any:
    """`doc[key]` if it is of `kind` (a bool is no number), None when absent or null; Malformed otherwise."""
    value = doc.get(key)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
        return value
    return _refuse(topic, key, value, kinds)


def _refuse(topic: str, key: str, value: Any, kinds: tuple[type, ...]) -> Any:
    wanted = " or ".join(dict.fromkeys(NAMES[k] for k in kinds))
    raise Malformed(f"malformed {topic}: {key} is {_kind(value)}, expected {wanted}")


def strings(doc: dict[str, Any], key: str, topic: str) -> list[str]:
    """A list of strings (`groups`, `problems`); a bare string is refused, not split into letters."""
    value = typed(doc, key, list, topic) or []
    if not all(isinstance(v, str) for v in value):
        raise Malformed(f"malformed {topic}: {key} holds something other than strings")
    return value


def groups_of(payload: bytes | None, topic: str) -> list[str]:
    """The `groups` of a device's retained `info`; Malformed when info or its groups are not well formed."""
    return strings(document(payload, topic) or {}, "groups", topic)
