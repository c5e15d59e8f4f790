"""argparse types for the agent's command line: a number out of range is refused by argparse, naming the option and
the range (exit 2, no traceback), before anything connects or runs.

Why: `edge subscribe --port 0` ended in an AttributeError traceback, `--timeout nan` waited "nan s", `--count -1`
was taken; `edge check --port 0` was blamed on the config file, which holds no 0.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(kind: type, low: float, high: float = math.inf, open_low: bool = False,
           open_high: bool = False) -> Callable[[str], int | float]:
    """A finite `kind` (int or float) between `low` and `high`, each end included unless `open_...`."""
    if open_low or open_high:
        bound = f"{'>' if open_low else '>='} {low:g}" + (
            f" and {'<' if open_high else '<='} {high:g}" if math.isfinite(high) else "")
    else:
        bound = f"from {low:g} to {high:g}" if math.isfinite(high) else f">= {low:g}"
    what = "a whole number" if kind is int else "a finite number" if open_low else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what.replace('finite ', '')}, got {text!r}") from None
        inside = (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} in range"
    return parse


PORT = number(int, 1, 65535)


def topic_base(text: str) -> str:
    """`edge subscribe --base`: a topic filter the watcher puts `/#` after. `+` may stand for a whole level (every
    device: the default `edgepipe/+`); `#` may not (it is added), nor an empty level. Why: `--base 'a/#'` reached
    paho's thread as an invalid filter: a traceback, then the watcher hung."""
    levels = text.split("/")
    if not text or "" in levels:
        raise argparse.ArgumentTypeError(f"expected a base topic like edgepipe/+ (no empty level), got {text!r}")
    if "#" in text or any("+" in level and level != "+" for level in levels) or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected a base topic like edgepipe/+ ('+' only as a whole level; no '#': "
                                         f"'/#' is added), got {text!r}")
    if len(text.encode()) > 1000:
        raise argparse.ArgumentTypeError(f"expected a base topic of at most 1000 bytes, got {len(text.encode())}")
    return text
