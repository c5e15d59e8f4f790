"""Argument types shared by the fleet commands: each refusal names the value and what is accepted.

argparse prints only `invalid <function> value: 'x'` when a type function raises ValueError; these raise
`argparse.ArgumentTypeError` with the reason, so `--settle nan` or `--parallel 0` is refused in words
rather than hanging, or being taken as "no limit".
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
MAX_SECONDS = 7 * 86400.0  # a week: longer is no timeout a person means (and overflows a thread wait near 1e9 s)


def argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """`parse` as an argparse type: its ValueError message becomes the error argparse prints."""

    def typed(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = parse.__name__
    return typed


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r}: expected a finite number (NaN and infinity are refused)")
    return value


@argument
def seconds(text: str) -> float:
    """A positive, finite duration of at most a week."""
    value = _number(text)
    if not 0 < value <= MAX_SECONDS:
        raise ValueError(f"{text!r}: expected seconds in (0, {MAX_SECONDS:g}]")
    return value


@argument
def quiet_seconds(text: str) -> float:
    """Like `seconds`, but 0 is allowed (no wait)."""
    value = _number(text)
    if not 0 <= value <= MAX_SECONDS:
        raise ValueError(f"{text!r}: expected seconds in [0, {MAX_SECONDS:g}]")
    return value


@argument
def factor(text: str) -> float:
    """A positive, finite multiplier (at most 1e6)."""
    value = _number(text)
    if not 0 < value <= 1e6:
        raise ValueError(f"{text!r}: expected a number in (0, 1e6]")
    return value


def whole(low: int, high: int) -> Callable[[str], int]:
    """An integer in [low, high]."""

    @argument
    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r}: expected a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"{value}: expected a whole number from {low} to {high}")
        return value

    return count


@argument
def topic_prefix(text: str) -> str:
    """The devices' base prefix: a plain topic, no wildcards (it is subscribed to as `<prefix>/+/...`)."""
    if not text or text.strip("/") != text:
        raise ValueError(f"{text!r}: expected a topic like edgepipe (not empty, no leading or trailing /)")
    if any(c in text for c in "+#\0") or "//" in text or len(text) > 200:
        raise ValueError(f"{text!r}: a prefix is a plain topic: no + or # wildcards, no empty level, "
                         "at most 200 characters")
    return text


@argument
def bundle_file(text: str) -> Path:
    """A bundle that exists: refused here rather than reported as a device that does not answer."""
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"{text}: no such bundle file (make one with python -m fleet bundle)")
    return path


def values_may_start_with_dash(argv: Sequence[str], options: Sequence[str]) -> list[str]:
    """`--stages -5,100` -> `--stages=-5,100`: argparse takes a value starting with `-` for an option, and
    would say "expected one argument" instead of what is wrong with the value."""
    out, items = [], list(argv)
    i = 0
    while i < len(items):
        if items[i] in options and i + 1 < len(items) and items[i + 1].startswith("-") \
                and not items[i + 1].startswith("--"):
            out.append(f"{items[i]}={items[i + 1]}")
            i += 2
            continue
        out.append(items[i])
        i += 1
    return out
