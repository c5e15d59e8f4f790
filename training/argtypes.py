"""argparse types for the trainer's numeric options: a value out of range is refused by argparse, naming the
option and the range (exit 2, no traceback), before anything is trained.

Why: `--window 0` reached Keras as a Dense layer of 0 units (a traceback), `--false-alarms-per-day -1` a math
domain error, and `--epochs -1` or `--normal-rows -5` trained and exported something nobody asked for.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole(minimum: int) -> Callable[[str], int]:
    """A whole number >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def rate(below: float = math.inf) -> Callable[[str], float]:
    """A finite number > 0 (and < `below`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and 0 < value < below):
            bound = "" if math.isinf(below) else f" and < {below:g}"
            raise argparse.ArgumentTypeError(f"expected a finite number > 0{bound}, got {text}")
        return value

    parse.__name__ = "rate"
    return parse
