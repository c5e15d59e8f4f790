"""Univariate series for the forecaster: the lecture's airline passengers or any CSV column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.datasets._csv import read_numeric_columns
from training.paths import DATA_DIR

AIRLINE_CSV = DATA_DIR / "airline-passengers.csv"


@dataclass
class SeriesData:
    name: str
    column: str
    values: np.ndarray  # float32, shape (n,)


def load_series_csv(path: Path | str = AIRLINE_CSV, column: str | None = None) -> SeriesData:
    """One numeric column of a CSV, chosen by header name (default: the last numeric column)."""
    names, values = read_numeric_columns(path, [column] if column else None, "series")
    return SeriesData(Path(path).stem, names[-1], values[:, -1].copy())


def load_series(spec: str) -> SeriesData:
    """`airline` or `PATH.csv[:COLUMN]`."""
    if spec == "airline":
        return load_series_csv(AIRLINE_CSV, "Passengers")
    path, _, column = spec.partition(":")
    return load_series_csv(path, column or None)
