"""argparse types for the trainer's numeric options, built on the agent's own (`edge.argtypes.number`): a value
out of range is refused by argparse, naming the option and the range (exit 2, no traceback), before anything
is trained.

Why: `--window 0` reached Keras as a Dense layer of 0 units (a traceback), `--false-alarms-per-day -1` a math
domain error, and `--epochs -1` or `--normal-rows -5` trained and exported something nobody asked for.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from edge.argtypes import number


def whole(minimum: int) -> Callable[[str], int]:
    """A whole number >= `minimum`."""
    return number(int, minimum)  # type: ignore[return-value]


def rate(below: float = math.inf) -> Callable[[str], float]:
    """A finite number > 0 (and < `below`)."""
    return number(float, 0, below, open_low=True, open_high=True)


def folder(text: str) -> Path:
    """A folder the command writes into (made when missing): refused by argparse when the path, or a folder
    above it, is a file -- before minutes of training or measuring, not after (a user's trial: `gan-quality
    --report FILE` measured for ten seconds, then failed)."""
    path = Path(text)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f": {part}"
                raise argparse.ArgumentTypeError(f"{text}{where} is a file, not a folder")
            break
    return path
