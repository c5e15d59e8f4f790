"""Sensor data for the autoencoder: the lecture's synthetic lines, or any multi-column CSV.

The lecture's data (f(x) = 2x + e, noisy and "wrong" variants) is regenerated exactly:
Python's `random` seeded with 24601, drawn in the lecture's order, so our figures are
comparable to its "clean 0.0008 / noisy 0.0042 / wrong 0.0082".
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.timestamps import EPOCH_FLOOR, to_seconds  # the one rule for "is this number a time"
from training.datasets._csv import read_numeric_columns, read_rows
from training.datasets.errors import DatasetError

log = logging.getLogger(__name__)
#: header names taken as the readings' timestamp (case-insensitive); any column of ISO-8601 dates is too
TIME_COLUMNS = ("timestamp", "time", "ts", "date", "datetime", "time_stamp", "when")

LECTURE_SEED = 24601
DATA_SIZE = 10000
DATA_NOISE = 0.1
TEST_NOISE = 0.3


@dataclass
class SensorData:
    """Normal data to train on and held-out normal data; `anomalous` holds labelled test sets."""

    name: str
    features: list[str]
    train: np.ndarray
    validation: np.ndarray
    anomalous: dict[str, np.ndarray]
    #: seconds of each reading of `train`, `validation` and each anomalous set (empty: no clock)
    seconds: dict[str, np.ndarray] = field(default_factory=dict)
    time_column: str | None = None
    #: readings are a time-ordered stream (CSV) rather than independent draws (the lecture's)
    ordered: bool = False

    @property
    def period_s(self) -> float | None:
        """The median spacing of the normal period's timestamps (None without a clock)."""
        times = np.concatenate([self.seconds[k] for k in ("train", "validation") if k in self.seconds] or [[]])
        steps = np.diff(times)
        steps = steps[steps > 0]
        return float(np.median(steps)) if len(steps) else None


def lecture_sensor_data(seed: int = LECTURE_SEED, size: int = DATA_SIZE) -> SensorData:
    """The lecture's clean/test/noisy/wrong sets, same seed, same draw order, same noise levels."""
    rng = random.Random(seed)

    def noise(scale: float) -> float:
        return (2 * rng.uniform(0, 1) - 1) * scale

    def gen_x(n: int) -> list[float]:
        return [rng.uniform(0, 1) for _ in range(n)]

    def gen_y(xs: list[float]) -> list[list[float]]:
        return [[x, 2 * x + noise(DATA_NOISE) - 1] for x in xs]

    x_in = gen_x(size)
    x_test = gen_x(int(0.2 * size))
    y_out = np.array(gen_y(x_in), dtype=np.float32)
    y_test = np.array(gen_y(x_test), dtype=np.float32)
    y_noisy = np.array([[x, 2 * x + noise(TEST_NOISE) - 1] for x in x_in], dtype=np.float32)
    y_wrong = np.array([[x, 1.5 * x + noise(DATA_NOISE) - 1] for x in x_in], dtype=np.float32)
    return SensorData("lecture", ["x", "y"], y_out, y_test, {"noisy": y_noisy, "wrong": y_wrong})


def load_sensor_csv(path: Path | str, columns: list[str] | None = None, normal_rows: int | None = None,
                    validation_fraction: float = 0.2) -> SensorData:
    """A CSV of readings: the first `normal_rows` (default all) are the normal period to learn.

    The last `validation_fraction` of the normal period is held out to calibrate the threshold;
    rows after the normal period are returned as `anomalous["after"]` for inspection.
    """
    time_column, seconds = read_timestamps(path)
    names, values = read_numeric_columns(path, columns, "sensor")
    if columns is None and time_column in names:  # epoch seconds are numeric, but not a reading
        keep = [i for i, n in enumerate(names) if n != time_column]
        names, values = [names[i] for i in keep], values[:, keep]
        if not names:
            raise DatasetError(f"{path}: no numeric column besides the timestamp {time_column!r}")
    normal = values[:normal_rows] if normal_rows else values
    n_val = int(len(normal) * validation_fraction)
    if len(normal) - n_val < 10 or n_val < 1:
        raise DatasetError(f"{path}: {len(normal)} normal rows are too few (need at least 13)")
    anomalous = {"after": values[normal_rows:]} if normal_rows and normal_rows < len(values) else {}
    n_normal = len(normal)
    times = {}
    if seconds is not None:
        times = {"train": seconds[:n_normal - n_val], "validation": seconds[n_normal - n_val:n_normal]}
        if anomalous:
            times["after"] = seconds[n_normal:]
    return SensorData(Path(path).stem, names, normal[:-n_val], normal[-n_val:], anomalous, times, time_column,
                      ordered=True)


def read_timestamps(path: Path | str) -> tuple[str | None, np.ndarray | None]:
    """The timestamp column (by name, or the first column of ISO-8601 dates) and its seconds.

    Returns (column, seconds) or (None, None) when the file has no clock: no such column, a
    counter instead of epoch seconds, or a cell that does not parse (logged, then ignored).
    """
    rows = [row for _, row in read_rows(path, "sensor") if row and any(c.strip() for c in row)]
    if len(rows) < 2:
        return None, None
    header = [h.strip() for h in rows[0]]
    first = rows[1]
    candidates = [i for i, h in enumerate(header) if h.lower() in TIME_COLUMNS]
    candidates += [i for i, h in enumerate(header) if i not in candidates and i < len(first)
                   and not _numeric(first[i]) and to_seconds(first[i].strip()) is not None]
    for index in candidates:
        cells = [r[index].strip() if index < len(r) else "" for r in rows[1:]]
        parsed = [to_seconds(float(c)) if _numeric(c) else to_seconds(c) for c in cells]
        if any(p is None for p in parsed):
            log.warning("%s: column %r looks like a timestamp but not every cell parses; no clock", path,
                        header[index])
            continue
        seconds = np.asarray(parsed, np.float64)
        if _numeric(cells[0]) and seconds.min() < EPOCH_FLOOR:
            return header[index], None  # a counter: the readings are ordered, but there is no clock
        return header[index], seconds
    return None, None


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def load_sensors(spec: str, normal_rows: int | None = None) -> SensorData:
    """`lecture` or `PATH.csv[:COL1,COL2,...]` (the first `normal_rows` rows are the normal period)."""
    if spec == "lecture":
        return lecture_sensor_data()
    path, _, cols = spec.partition(":")
    return load_sensor_csv(path, cols.split(",") if cols else None, normal_rows=normal_rows)


def injected_stream(segments: list[tuple[str, int, int]], length: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """A stream of the lecture's readings (fresh draws, another seed) with segments swapped for the
    "wrong" (1.5x) or "noisy" (+-0.3) line at known positions: [(kind, start, end), ...].

    Returns the readings (length, 2) and the kind of every reading ("clean", "wrong", "noisy").
    """
    rng = random.Random(seed)
    kinds = ["clean"] * length
    for kind, start, end in segments:
        kinds[start:end] = [kind] * (end - start)
    rows = []
    for kind in kinds:
        x = rng.uniform(0, 1)
        slope, scale = (1.5, DATA_NOISE) if kind == "wrong" else (2.0, TEST_NOISE if kind == "noisy" else DATA_NOISE)
        rows.append([x, slope * x + (2 * rng.uniform(0, 1) - 1) * scale - 1])
    return np.asarray(rows, np.float32), kinds
