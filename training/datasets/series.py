"""Univariate series for the forecaster: the lecture's airline passengers or any CSV column.

Besides the values, the loader reads the series' sampling frequency from a date column when
there is one (`1949-01`, `1958-03-01`, `2001Q3`, ...): the season length that `--transform auto`
and the seasonal baselines use comes from it (12 for monthly data, 4 for quarterly, ...).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.datasets._csv import read_numeric_columns, read_rows
from training.paths import DATA_DIR

log = logging.getLogger(__name__)

AIRLINE_CSV = DATA_DIR / "airline-passengers.csv"

#: median spacing in days -> (frequency name, season length); None: no calendar season
FREQUENCIES = [(1 / 24, 0.6 / 24, 1.4 / 24, "hourly", 24), (1, 0.6, 1.4, "daily", 7),
               (7, 6, 8, "weekly", 52), (30.4, 27, 32, "monthly", 12), (91.3, 88, 93, "quarterly", 4),
               (365.2, 360, 370, "yearly", None)]
QUARTER = re.compile(r"^(\d{4})[- ]?Q([1-4])$", re.IGNORECASE)
YEAR_MONTH = re.compile(r"^(\d{4})[-/](\d{1,2})$")


@dataclass
class SeriesData:
    name: str
    column: str
    values: np.ndarray  # float32, shape (n,)
    frequency: str | None = None  # "monthly", "quarterly", ... when a date column says so
    season: int | None = None  # season length in samples from the frequency (None: unknown or no season)


def parse_date(text: str) -> dt.datetime | None:
    """ISO dates and times, `YYYY-MM`, `YYYY/MM` and `YYYYQn`; None for anything else."""
    text = text.strip().strip('"')
    if match := QUARTER.match(text):
        return dt.datetime(int(match[1]), 3 * int(match[2]) - 2, 1)
    if match := YEAR_MONTH.match(text):
        return dt.datetime(int(match[1]), int(match[2]), 1)
    try:
        return dt.datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
    except ValueError:
        return None


def frequency_of(dates: list[dt.datetime]) -> tuple[str | None, int | None]:
    """The sampling frequency from the median spacing of the dates, and its calendar season."""
    if len(dates) < 3:
        return None, None
    days = np.median(np.diff([d.timestamp() for d in dates])) / 86400
    for _, low, high, name, season in FREQUENCIES:
        if low <= days <= high:
            return name, season
    return None, None


def read_dates(path: Path) -> list[dt.datetime] | None:
    """The first column whose every cell is a date (None when there is none)."""
    rows = [row for _, row in read_rows(path, "series") if row and any(cell.strip() for cell in row)][1:]
    if not rows:
        return None
    for index in range(len(rows[0])):
        dates = [parse_date(row[index]) if index < len(row) else None for row in rows]
        if all(d is not None for d in dates):
            return dates  # type: ignore[return-value]
    return None


def load_series_csv(path: Path | str = AIRLINE_CSV, column: str | None = None) -> SeriesData:
    """One numeric column of a CSV, chosen by header name (default: the last numeric column)."""
    names, values = read_numeric_columns(path, [column] if column else None, "series")
    dates = read_dates(Path(path))
    frequency, season = frequency_of(dates) if dates else (None, None)
    log.info("%s: %d values of %r, frequency %s (season %s)", path, len(values), names[-1],
             frequency or "unknown (no date column)", season)
    return SeriesData(Path(path).stem, names[-1], values[:, -1].copy(), frequency, season)


def load_series(spec: str) -> SeriesData:
    """`airline` or `PATH.csv[:COLUMN]`."""
    if spec == "airline":
        return load_series_csv(AIRLINE_CSV, "Passengers")
    path, _, column = spec.partition(":")
    return load_series_csv(path, column or None)
