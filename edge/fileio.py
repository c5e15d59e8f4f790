"""Writing files safely: atomically, and through a full disk without losing what was being written.

`atomic_write`: a temp file in the same folder, fsync, then rename over the target, so a reader
(or the next start after a power cut) sees the old file or the new one. The mode is set
explicitly because `mkstemp` creates files 0600: a manifest or a stats file written that
way is unreadable by the service user that reads it later.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


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


class WriteRetry:
    """Retries a failing write (disk full, a read-only or vanished SD card) with backoff until it succeeds.

    A full disk must neither lose what was being written nor kill the thread that writes: the
    caller's thread waits here, its input unacknowledged, and carries on by itself once space
    returns. The failure is logged and reported once per episode (not once per attempt), and
    `failing_since` lets the agent say in `stats` -- and to the systemd watchdog -- that this
    path makes no progress. `stop` ends the wait with `StorageUnavailable`.
    """

    ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)

    def __init__(self, component: str, action: str, stop: threading.Event,
                 report: Callable[[str, str], None] | None = None, first_delay: float = 0.5,
                 max_delay: float = 30.0) -> None:
        self.component, self.action, self.stop, self.report = component, action, stop, report
        self.first_delay, self.max_delay = first_delay, max_delay
        self.failing_since: float | None = None
        self.failures = 0  # attempts that failed, over the life of the process
        self.last_error = ""

    def __call__(self, write: Callable[[], T]) -> T:
        delay = self.first_delay
        while True:
            try:
                result = write()
            except self.ERRORS as exc:
                self._failed(exc, delay)
                if self.stop.wait(delay):
                    raise StorageUnavailable(f"{self.component}: {self.action}: {self.last_error} "
                                             "(gave up at shutdown)") from exc
                delay = min(delay * 2, self.max_delay)
                continue
            if self.failing_since is not None:
                log.warning("%s: %s works again after %.0f s", self.component, self.action,
                            time.monotonic() - self.failing_since)
                self.failing_since = None
            return result

    def _failed(self, exc: BaseException, delay: float) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.failing_since is None:  # once per episode
            self.failing_since = time.monotonic()
            reason = f"{self.action} failed ({self.last_error}); retrying with backoff, nothing is dropped meanwhile"
            if self.report is not None:
                self.report(self.component, reason)  # logs it too
            else:
                log.error("%s: %s", self.component, reason)

    def stalled_for(self) -> float:
        """Seconds this write has been failing (0 when it works)."""
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since


class StorageUnavailable(RuntimeError):
    """A write that kept failing until the agent stopped; its input stays unacknowledged."""
