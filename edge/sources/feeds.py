"""Where readings come from besides MQTT: a CSV file replayed at a chosen rate, or stdin lines.

A feed calls `submit(payload)` for every reading; parsing and validation happen in the
pipeline, so a bad line is counted and reported like a bad MQTT payload.
"""

from __future__ import annotations

import csv
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TextIO

from edge.sources import SourceSpec

log = logging.getLogger(__name__)
Submit = Callable[[str], None]


class Feed(Protocol):
    """A finite reading source that pushes each line to a pipeline from a thread of its own."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class CsvFeed:
    """Rows of a CSV file (selected columns, by header name) at `rate` rows per second (0: no pause)."""

    def __init__(self, spec: str, rate: float, submit: Submit, on_done: Callable[[], None] | None = None) -> None:
        """`spec` is the source argument, `<file>[:col1,col2]`."""
        path, _, columns = spec.partition(":")
        self.path = Path(path)
        self.columns = [c for c in columns.split(",") if c] if columns else None
        self.rate, self.submit, self.on_done = rate, submit, on_done
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"csv:{self.path.name}", daemon=True)

    def rows(self) -> Iterator[str]:
        """The selected cells of each data row, joined as a CSV line, read lazily (a file may be huge)."""
        with open(self.path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            first = next(reader, None)
            if first is None:
                raise ValueError(f"{self.path}: empty file (expected a header line)")
            header = [h.strip() for h in first]
            if self.columns:
                missing = [c for c in self.columns if c not in header]
                if missing:
                    raise ValueError(f"{self.path}: columns {missing} not in the header {header}")
                index = [header.index(c) for c in self.columns]
            else:
                index = list(range(len(header)))
            for row in reader:
                if row:
                    yield ",".join(row[i] if i < len(row) else "" for i in index)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        try:
            for line in self.rows():
                if self.stop_event.is_set():
                    break
                self.submit(line)
                if period:
                    next_at += period
                    self.stop_event.wait(max(0.0, next_at - time.monotonic()))
        except (OSError, ValueError, csv.Error) as exc:
            log.error("CSV feed %s: %s", self.path, exc)
        if self.on_done:
            self.on_done()

    def stop(self) -> None:
        self.stop_event.set()


class StdinFeed:
    """One reading per line of standard input (JSON or CSV)."""

    def __init__(self, submit: Submit, stream: TextIO | None = None, on_done: Callable[[], None] | None = None) -> None:
        self.submit, self.stream, self.on_done = submit, stream or sys.stdin, on_done
        self.thread = threading.Thread(target=self._run, name="stdin", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        for line in self.stream:
            if line.strip():
                self.submit(line)
        if self.on_done:
            self.on_done()

    def stop(self) -> None:
        pass  # a blocking read on stdin cannot be interrupted; the thread is a daemon


def make_feed(spec: SourceSpec, rate: float, submit: Submit, on_done: Callable[[], None]) -> Feed:
    """The feed for a `csv:` or `stdin` source (an `mqtt` source has none: the link delivers it)."""
    if spec.kind == "csv":
        return CsvFeed(spec.arg, rate, submit, on_done)
    if spec.kind == "stdin":
        return StdinFeed(submit, on_done=on_done)
    raise ValueError(f"no feed for a {spec.kind!r} source")
