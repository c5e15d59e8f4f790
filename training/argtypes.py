"""argparse types for the trainer's numeric options, built on the agent's own (`edge.argtypes.number`): a value
out of range is refused by argparse, naming the option and the range (exit 2, no traceback), before anything
is trained.

Why: `--window 0` reached Keras as a Dense layer of 0 units (a traceback), `--false-alarms-per-day -1` a math
domain error, and `--epochs -1` or `--normal-rows -5` trained and exported something nobody asked for.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from edge.argtypes import number

#: `--epochs` at most: far beyond any profile (150 at most), short of a run that never ends
MAX_EPOCHS = 100_000


def whole(minimum: int, maximum: float = math.inf) -> Callable[[str], int]:
    """A whole number >= `minimum` (and <= `maximum`: a count that would run for ever is no count)."""
    return number(int, minimum, maximum)  # type: ignore[return-value]


def rate(below: float = math.inf, at_most: float = math.inf) -> Callable[[str], float]:
    """A finite number > 0 (and < `below`, <= `at_most`)."""
    if math.isfinite(at_most):
        return number(float, 0, at_most, open_low=True)
    return number(float, 0, below, open_low=True, open_high=True)


def folder(text: str) -> Path:
    """A folder the command writes into (made when missing): refused by argparse when the path, or a folder
    above it, is a file -- before minutes of training or measuring, not after (a user's trial: `gan-quality
    --report FILE` measured for ten seconds, then failed)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty path (it would mean the current folder)")
    path = Path(text)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f": {part}"
                raise argparse.ArgumentTypeError(f"{text}{where} is a file, not a folder")
            break
    return path


def cannot_write(folder: Path) -> str | None:
    """Why nothing can be written into `folder` (made when missing), or None: asked before the work, so a
    folder the system refuses (`/sys/...`, a read-only mount, a full disk) is said before minutes of training or
    measuring and leaves no model files without their manifest (a user's trial: 45 s of training, then "cannot
    use /sys/edgepipe"). A probe file is made and removed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".edgepipe-probe-"):
            pass
    except OSError as exc:
        return f"cannot write into {folder}: {exc.strerror or exc}"
    return None
