"""Atomic file writes: a reader (or the next start after a power cut) sees the old file or the new one.

A temp file in the same folder, fsync, then rename over the target. The mode is set
explicitly because `mkstemp` creates files 0600: a manifest or a stats file written that
way is unreadable by the service user that reads it later.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path | str, data: bytes | str, mode: int = 0o644) -> None:
    """Replace `path` with `data` in one step; the temp file is removed on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
