"""argparse types for the agent's command line: a number out of range is refused by argparse, naming the option and
the range (exit 2, no traceback), before anything connects or runs.

Why: `edge subscribe --port 0` ended in an AttributeError traceback, `--timeout nan` waited "nan s", `--count -1`
was taken; `edge check --port 0` was blamed on the config file, which holds no 0.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(kind: type, low: float, high: float = math.inf) -> Callable[[str], int | float]:
    """A finite `kind` (int or float) in [low, high]."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            bound = f"from {low:g} to {high:g}" if math.isfinite(high) else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number {bound}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} in range"
    return parse


PORT = number(int, 1, 65535)
