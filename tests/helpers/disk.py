"""Real small file systems for the disk faults a Pi meets: a tmpfs of a given size (root only)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """`mount` (an existing folder) as a tmpfs of `size` (`3m`) until the block ends; skips the test without root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the disk tests run as root in CI)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
