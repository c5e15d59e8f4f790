"""Sensor readings -> the autoencoder's input, as the manifest's `preprocess` says (numpy + stdlib only).

One function builds the input for training (a whole recording at once) and for the edge's
`AnomalyScorer` (the last `window` readings), so both compute the same numbers:

1. each reading's features are scaled, `(value - offset) / scale`;
2. optional calendar features are appended to each reading: sin/cos of the time of day and/or of
   the day of the week (`time_features`: "day", "week"), for streams whose normal level follows the
   clock (a reading that is normal at noon may be abnormal at 3 am). Naive timestamps are taken as
   wall-clock time, as the edge reads them;
3. `window` consecutive readings are flattened oldest first;
4. optional per-window normalisation of the sensor features (`window_norm`): "mean" subtracts each
   feature's mean over the window (the shape counts, not the level: for drifting streams), "zscore"
   also divides by its standard deviation (at least `ZSCORE_FLOOR`, so a stuck sensor's flat window
   is not blown up). The calendar features are never normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TIME_FEATURES = ("day", "week")
WINDOW_NORMS = ("none", "mean", "zscore")
ZSCORE_FLOOR = 0.05  # in scaled units (the training range spans about 2)
SECONDS_PER_DAY = 86400.0


def calendar_features(seconds: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """(N,) seconds -> (N, 2 * len(kinds)): sin and cos of the phase in the day and/or the week (Monday 0)."""
    seconds = np.asarray(seconds, np.float64).reshape(-1)
    columns = []
    for kind in kinds:
        if kind == "day":
            phase = np.mod(seconds, SECONDS_PER_DAY) / SECONDS_PER_DAY
        elif kind == "week":
            phase = np.mod(seconds / SECONDS_PER_DAY + 3.0, 7.0) / 7.0  # 1970-01-01 was a Thursday
        else:
            raise ValueError(f"unknown time feature {kind!r} (known: {', '.join(TIME_FEATURES)})")
        columns += [np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)]
    return np.stack(columns, axis=1) if columns else np.zeros((len(seconds), 0))


def reading_rows(values: np.ndarray, seconds: np.ndarray | None, pre: dict[str, Any]) -> np.ndarray:
    """(N, F) readings (+ their times) -> (N, F + 2 * len(time_features)) float32 rows."""
    offset, scale = np.asarray(pre["offset"], np.float64), np.asarray(pre["scale"], np.float64)
    rows = (np.asarray(values, np.float64) - offset) / scale
    kinds = list(pre.get("time_features") or [])
    if kinds:
        if seconds is None or not np.all(np.isfinite(np.asarray(seconds, np.float64))):
            raise ValueError(f"time features {kinds} need a timestamp with every reading")
        rows = np.concatenate([rows, calendar_features(seconds, kinds)], axis=1)
    return rows.astype(np.float32)


def window_inputs(rows: np.ndarray, pre: dict[str, Any]) -> np.ndarray:
    """(N, D) rows -> (N - window + 1, window * D): every run of `window` rows, oldest first, normalised."""
    window, features = int(pre["window"]), len(pre["features"])
    norm = pre.get("window_norm", "none") or "none"
    if norm not in WINDOW_NORMS:
        raise ValueError(f"unknown window_norm {norm!r} (known: {', '.join(WINDOW_NORMS)})")
    rows = np.asarray(rows, np.float32)
    if len(rows) < window:
        return np.zeros((0, window * rows.shape[1]), np.float32)
    stacked = np.lib.stride_tricks.sliding_window_view(rows, window, axis=0)  # (M, D, W)
    stacked = np.transpose(stacked, (0, 2, 1)).copy()  # (M, W, D)
    if norm != "none":
        sensor = stacked[:, :, :features]
        sensor -= sensor.mean(axis=1, keepdims=True)
        if norm == "zscore":
            sensor /= np.maximum(sensor.std(axis=1, keepdims=True), ZSCORE_FLOOR)
        stacked[:, :, :features] = sensor
    return stacked.reshape(len(stacked), -1)


def model_inputs(values: np.ndarray, seconds: np.ndarray | None, pre: dict[str, Any]) -> np.ndarray:
    """Readings in time order -> one model input per reading from the `window`-th on."""
    return window_inputs(reading_rows(values, seconds, pre), pre)
