"""Writing files safely: atomically, through a full disk without losing what was being written, and state
files that are checked when they are read back.

`atomic_write`: a temp file in the same folder, fsync, then rename over the target, so a reader
(or the next start after a power cut) sees the old file or the new one. The mode is set
explicitly because `mkstemp` creates files 0600: a manifest or a stats file written that
way is unreadable by the service user that reads it later.

`StateFile`: one JSON object the agent keeps between runs (a forecaster's state, a commanded
threshold, a calibrated plan, the Home Assistant entities announced, a bundle half received, the
model pointer), saved with `atomic_write` and a checksum; one that is damaged anyway never stops a
start: it is set aside with a warning that says what follows.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from edge import numbers

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


CHECKSUM = "checksum"  # the field of a state file that holds the sha256 of the rest of it


def checksum(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _verified(data: Any) -> dict[str, Any]:
    """A state file's content, its checksum checked; ValueError when it is not what was saved."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if set(data) == {"body", "sha256"} and isinstance(data["body"], dict):  # the forecaster's first format
        content, stored = data["body"], data["sha256"]
    elif CHECKSUM in data:
        content = {k: v for k, v in data.items() if k != CHECKSUM}
        stored = data[CHECKSUM]
    else:
        return data  # written before state files carried a checksum: taken as it is
    if stored != checksum(content):
        raise ValueError("checksum mismatch (torn or edited file)")
    return content


class StateFile:
    """One JSON object kept between runs: saved atomically with a checksum, checked when read back.

    The checksum is a field of the object (`"checksum"`, the sha256 of the rest), so the file stays
    the object it was: its fields are where a person (or an older reader) looks for them, and a file
    written before checksums still loads. A file that cannot be read, is not a JSON object, fails its
    checksum or is refused by the caller's `parse` (ValueError, KeyError, TypeError) is damaged:
    `load` returns None, `problem` says why and what follows (`then`), a warning is logged, and the
    file is set aside as `<name>.bad-<time>` (`set_aside`: the newest KEEP_DAMAGED copies are kept) -- unless
    `keep_damaged` (a person should see it where it is: the model pointer).
    """

    def __init__(self, path: Path | str, then: str, mode: int = 0o644, indent: int | None = None,
                 keep_damaged: bool = False, kept: str = "left in place", quiet: bool = False) -> None:
        self.path, self.then, self.mode, self.indent = Path(path), then, mode, indent
        self.keep_damaged, self.kept = keep_damaged, kept  # `kept`: what `problem` says of a damaged file kept
        self.quiet = quiet  # the caller says `problem` itself (`edge check`'s lines): no warning, or it is said twice
        self.problem: str | None = None  # why the last load found the file damaged

    def load(self, parse: Callable[[dict[str, Any]], T]) -> T | None:
        """`parse` of the saved object; None when there is no file or it is damaged."""
        self.problem = None
        try:
            return parse(_verified(numbers.loads(self.path.read_text(encoding="utf-8"))))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self._damaged(exc)
            return None

    def save(self, data: dict[str, Any]) -> None:
        """Replace the file with `data` and its checksum (OSError on a full disk: the old file stays)."""
        text = json.dumps({**data, CHECKSUM: checksum(data)}, indent=self.indent)
        atomic_write(self.path, text + ("\n" if self.indent is not None else ""), mode=self.mode)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def _damaged(self, exc: BaseException) -> None:
        why = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
        where = self.kept
        if not self.keep_damaged:
            try:
                where = f"moved to {set_aside(self.path).name}"
            except OSError:
                pass
        self.problem = f"state file {self.path} unusable ({why}); {where}, {self.then}"
        if not self.quiet:
            log.warning("%s", self.problem)


KEEP_DAMAGED = 5  # set-aside copies kept per state file: one damaged again and again (a failing SD card) fills no disk


def set_aside(path: Path, keep: int = KEEP_DAMAGED, stamp: int | None = None, kind: str = "bad") -> Path:
    """Move a damaged `path` to `<name>.<kind>-<time>` (`<time>` in epoch seconds, `stamp` if given; another copy of
    the same second gets `-1`, `-2`, ...: none overwrites another, none sorts before an older one) and delete all
    but the newest `keep` copies of that file, logging what it deleted. The one just moved is always kept, also
    when the clock went back (a Pi without a real-time clock). Returns its path; OSError when it cannot be moved."""
    second = int(time.time()) if stamp is None else stamp
    older = sorted(_set_aside_copies(path, kind))
    taken = [n for (when, n), _ in older if when == second]  # after the last of that second: the order stays true
    aside = path.with_name(f"{path.name}.{kind}-{second}" + (f"-{max(taken) + 1}" if taken else ""))
    path.rename(aside)
    removed = []
    for _, copy in older[:max(0, len(older) - (keep - 1))]:
        try:
            copy.unlink()
            removed.append(copy.name)
        except OSError as exc:
            log.warning("could not delete the old damaged copy %s: %s", copy, exc.strerror or exc)
    if removed:
        log.warning("deleted %d older damaged cop%s of %s, keeping the newest %d: %s", len(removed),
                    "y" if len(removed) == 1 else "ies", path.name, keep, ", ".join(removed))
    return aside


def _set_aside_copies(path: Path, kind: str) -> list[tuple[tuple[int, int], Path]]:
    """The `<name>.<kind>-<time>[-<n>]` copies of `path` beside it, each with (time, n): oldest first when sorted."""
    pattern = re.compile(re.escape(f"{path.name}.{kind}-") + r"(\d{1,20})(?:-(\d{1,9}))?")
    found = []
    for copy in path.parent.glob(f"{glob.escape(path.name)}.{kind}-*"):
        match = pattern.fullmatch(copy.name)
        if match:
            found.append(((int(match[1]), int(match[2] or 0)), copy))
    return found


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
