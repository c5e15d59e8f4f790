"""Where readings come from besides MQTT: a CSV file replayed at a chosen rate, or stdin lines.

A CSV is read as the trainer reads it: the model's features by header name, in the manifest's
order, and a timestamp column as each reading's time (`csv_layout`).

A feed calls `submit(payload)` for every reading; parsing and validation happen in the
pipeline, so a bad line is counted and reported like a bad MQTT payload.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from edge.sources import SourceSpec
from edge.sources.frames import SourceError
from edge.timestamps import to_seconds

log = logging.getLogger(__name__)
Submit = Callable[[str], None]


class Feed(Protocol):
    """A finite reading source that pushes each line to a pipeline from a thread of its own."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


#: header names read as the readings' clock (as the trainer reads them, `training/datasets/sensors.py`)
TIME_COLUMNS = ("timestamp", "time", "ts", "date", "datetime", "time_stamp", "when")


@dataclass(frozen=True)
class CsvLayout:
    """Which cells of a row are the reading's values (in the model's order) and which one is its time."""

    header: list[str]
    index: list[int]
    time_index: int | None

    @property
    def time_column(self) -> str | None:
        return None if self.time_index is None else self.header[self.time_index]


def _is_iso_time(cell: str) -> bool:
    """An ISO-8601 date or time, or a month written `YYYY-MM` (monthly series); a number never is one
    (epoch seconds are recognised by the column's name only)."""
    cell = cell.strip()
    try:
        float(cell)
        return False
    except ValueError:
        return to_seconds(cell) is not None or re.fullmatch(r"\d{4}-\d{2}", cell) is not None


def _time_index(header: list[str], first: list[str], taken: list[int], time_column: str | None) -> int | None:
    """The manifest's `time_column` when the header has it, else a column named like a timestamp,
    else the first column whose first cell is an ISO-8601 date; never one of the value columns."""
    free = [i for i in range(len(header)) if i not in taken]
    for i in free:
        if time_column and header[i] == time_column:
            return i
    for i in free:
        if header[i].lower() in TIME_COLUMNS:
            return i
    return next((i for i in free if i < len(first) and _is_iso_time(first[i])), None)


def csv_layout(path: Path | str, columns: list[str] | None = None, features: list[str] | None = None,
               time_column: str | None = None) -> CsvLayout:
    """Read a CSV's header (and first row): the value columns -- the ones named in the source spec, else
    the model's `preprocess.features`, else every column but the time -- and the time column.

    SourceError when the file cannot be read or the header lacks a named column: said at start
    (and by `python -m edge check`), not as one invalid reading per row.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # a BOM (Excel) is not part of the header
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            first = next((row for row in reader if row), [])
    except OSError as exc:
        raise SourceError(f"cannot read {path} ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path} is not a CSV text file ({exc})") from None
    if not header or not any(header):
        raise SourceError(f"{path} is empty (expected a header line)")
    if columns and features and len(columns) != len(features):
        raise SourceError(f"{path}: {len(columns)} columns {columns} named, the model reads {len(features)} "
                          f"features {features}")
    wanted = columns or features
    if wanted:
        missing = [c for c in wanted if c not in header]
        if missing:
            what = "columns" if columns else "the model's features (manifest preprocess.features)"
            raise SourceError(f"{path}: {what} {missing} not in the header {header}")
        index = [header.index(c) for c in wanted]
        return CsvLayout(header, index, _time_index(header, first, index, time_column))
    time_index = _time_index(header, first, [], time_column)
    return CsvLayout(header, [i for i in range(len(header)) if i != time_index], time_index)


def row_payload(row: list[str], layout: CsvLayout) -> str:
    """One row as a reading: JSON `{"ts", "values"}` when every value cell is a number, else the selected
    cells as a CSV line (the pipeline refuses it, naming the cell)."""
    cells = [row[i].strip() if i < len(row) else "" for i in layout.index]
    stamp: Any = None
    if layout.time_index is not None and layout.time_index < len(row):
        stamp = row[layout.time_index].strip() or None
        try:
            stamp = float(stamp) if stamp is not None else None
        except ValueError:
            pass  # an ISO-8601 string travels as it is
    try:
        values = [float(c) for c in cells]
    except ValueError:
        return ",".join(cells)
    if not all(math.isfinite(v) for v in values):  # a 400-digit cell: the parser names it as written
        return ",".join(cells)
    return json.dumps({"ts": stamp, "values": values})


class CsvFeed:
    """Rows of a CSV file (selected columns, by header name) at `rate` rows per second (0: no pause).

    The columns are the ones the source names, else the model's features; a timestamp column
    becomes each reading's `ts` (so alerts and forecasts carry `reading_ts`) and is never a value.
    """

    def __init__(self, spec: str, rate: float, submit: Submit, on_done: Callable[[], None] | None = None,
                 features: list[str] | None = None, time_column: str | None = None) -> None:
        """`spec` is the source argument, `<file>[:col1,col2]`; a header lacking a column raises SourceError."""
        path, _, columns = spec.partition(":")
        self.path = Path(path)
        self.columns = [c for c in columns.split(",") if c] if columns else None
        self.layout = csv_layout(self.path, self.columns, features, time_column)
        self.rate, self.submit, self.on_done = rate, submit, on_done
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"csv:{self.path.name}", daemon=True)

    def rows(self) -> Iterator[str]:
        """Each data row as a reading payload, read lazily (a file may be huge)."""
        with open(self.path, newline="", encoding="utf-8-sig") as fh:  # a BOM (Excel) is not part of the header
            reader = csv.reader(fh)
            next(reader, None)
            for row in reader:
                if row:
                    yield row_payload(row, self.layout)

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


def make_feed(spec: SourceSpec, rate: float, submit: Submit, on_done: Callable[[], None],
              preprocess: dict[str, Any] | None = None) -> Feed:
    """The feed for a `csv:` or `stdin` source (an `mqtt` source has none: the link delivers it);
    `preprocess` is the model's manifest entry's, whose `features` and `time_column` a CSV follows."""
    if spec.kind == "csv":
        pre = preprocess or {}
        features = pre.get("features")
        return CsvFeed(spec.arg, rate, submit, on_done, [str(f) for f in features] if features else None,
                       pre.get("time_column"))
    if spec.kind == "stdin":
        return StdinFeed(submit, on_done=on_done)
    raise ValueError(f"no feed for a {spec.kind!r} source")
