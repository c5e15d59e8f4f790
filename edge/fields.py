"""Typed settings with the constraint on the field, and the one builder that checks them.

A config section is a dataclass whose fields say their type in the annotation and their
constraint in `setting(...)` (range, finite, choices, a name or an MQTT topic, a parser),
as pydantic's `Field(ge=...)` would, without a dependency. `build` turns a TOML table into
that dataclass and names the key in every error ("mqtt.port: expected an integer from 1 to
65535, got 70000"), so a typo never becomes a silent default. Cross-field rules live in the
dataclass's `validate()` and are reported with the same key prefix.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Any

from edge.numbers import show

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the expected value."""


@dataclass(frozen=True)
class Check:
    """What a value must satisfy besides its type."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None
    name: bool = False  # letters, digits, _ and - (it becomes part of topics)
    topic: tuple[str, ...] | None = None  # an MQTT topic name; the placeholders it may use
    parse: Callable[[str], Any] | None = None  # raises ValueError("expected ...") for a bad value
    empty_ok: bool = True  # "" means "the default" (a topic derived from the name)

    def __call__(self, key: str, value: Any) -> None:
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            self._number(key, value)
        elif isinstance(value, str):
            self._text(key, value)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{key}: expected one of {self.choices}, got {value!r}")

    def _number(self, key: str, value: float) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        if isinstance(value, int) and isinstance(self.ge, int) and isinstance(self.le, int):
            if not self.ge <= value <= self.le:
                raise ConfigError(f"{key}: expected an integer from {self.ge} to {self.le}, got {show(value)}")
            return
        if self.gt is not None and not value > self.gt:
            raise ConfigError(f"{key}: expected a number > {self.gt:g}, got {value!r}")
        if self.ge is not None and not value >= self.ge:
            raise ConfigError(f"{key}: expected a number >= {self.ge:g}, got {value!r}")
        if self.le is not None and not value <= self.le:
            raise ConfigError(f"{key}: expected a number <= {self.le:g}, got {value!r}")

    def _text(self, key: str, value: str) -> None:
        if self.name and (not value or not set(value) <= NAME_CHARS):
            raise ConfigError(f"{key}: expected letters, digits, '_' or '-' (used in topics), got {value!r}")
        if self.topic is not None and (value or not self.empty_ok):
            problem = topic_problem(value, self.topic)
            if problem:
                raise ConfigError(f"{key}: expected an MQTT topic name ({problem}), got {value!r}")
        if self.parse is not None:
            try:
                self.parse(value)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None


def topic_problem(topic: str, placeholders: tuple[str, ...] = ()) -> str | None:
    """Why `topic` cannot be published to (wildcards, empty levels, unknown placeholders), or None."""
    try:
        filled = topic.format(**{p: "x" for p in placeholders})
    except (KeyError, IndexError, ValueError) as exc:
        allowed = ", ".join("{" + p + "}" for p in placeholders) or "none"
        return f"placeholders allowed: {allowed}; {type(exc).__name__}: {exc}"
    if any(c in filled for c in "+#\0"):
        return "no wildcards '+' or '#'"
    if not filled or filled.startswith("$") or "" in filled.split("/"):
        return "not empty, no leading '$', no empty level"
    if len(filled.encode()) > 1024:
        return "at most 1024 bytes"
    return None


def folder_path(value: str) -> None:
    """A folder setting (`models_dir`, `state_dir`): "" would mean the current folder, wherever the agent was
    started (a user's trial: `state_dir = ""` saved rules beside the config)."""
    if not value.strip():
        raise ValueError(f"expected a folder, got {value!r}")


def setting(default: Any = MISSING, *, default_factory: Any = MISSING, ge: float | None = None,
            gt: float | None = None, le: float | None = None, choices: tuple[Any, ...] | None = None,
            name: bool = False, topic: tuple[str, ...] | None = None,
            parse: Callable[[str], Any] | None = None, empty_ok: bool = True) -> Any:
    """A dataclass field carrying its constraint (see `Check`)."""
    check = Check(ge, gt, le, choices, name, topic, parse, empty_ok)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"check": check})


#: a Python type as a person writing TOML or JSON calls it (an int is a float's value too: "a number")
KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}


def _type_error(key: str, kind: type, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {KINDS.get(kind, 'a ' + kind.__name__)}, got {value!r}")


def _scalar(key: str, annotation: Any, value: Any) -> Any:
    """Check a value against `str`, `int`, `float`, `bool` or `X | None` (None is the default only); `Any`
    takes any value (a command's `id`, checked by its owner)."""
    if annotation is Any:
        return value
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kind = kinds[0]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 1024:  # a 400-digit integer is no float: refused, not an OverflowError
            raise ConfigError(f"{key}: expected a number within ±1.8e308, got {show(value)}")
        value = float(value)
    if kind is bool and not isinstance(value, bool) or kind is not bool and (
            not isinstance(value, kind) or isinstance(value, bool)):
        raise _type_error(key, kind, value)
    return value


def build(cls: type, data: Any, where: str = "", also_known: tuple[str, ...] = ()) -> Any:
    """A dataclass instance from a TOML table: unknown keys, types, constraints and `validate()` checked.

    Fields with `init=False` are not settable; `also_known` are keys the caller handled itself
    (named in the "unknown key" message so the user sees every choice).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join([*fields, *also_known])})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{key}: missing (required)")
            continue
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = build(annotation, data[name], key)
            continue
        kwargs[name] = _scalar(key, annotation, data[name])
        f.metadata.get("check", Check())(key, kwargs[name])
    instance = cls(**kwargs)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc}") from None
    return instance


def build_list(cls: type, data: Any, section: str) -> list[Any]:
    """An array of tables (`[[section]]`), each built with `build`."""
    if not isinstance(data, list):
        raise ConfigError(f"{section}: expected an array of tables ([[{section}]]), got {data!r}")
    return [build(cls, item, f"{section}[{i}]") for i, item in enumerate(data)]


def keys_of(cls: type) -> list[str]:
    """The setting names of a section, for docs and the example-config test."""
    return [f.name for f in dataclasses.fields(cls) if f.init]
