"""The Numenta Anomaly Benchmark's scorer, written from its paper (Lavin & Ahmad 2015) and documentation.

Why our own: the project's alerts are judged by the field's scoreboard, and the scorer must be one we can read
and test (tests/test_nab_score.py reproduces numenta's published per-file scores from its per-row output).
The rules, per file:
- anomaly windows (labels/combined_windows.json); a detection inside a window earns the scaled sigmoid of its
  position in the window divided by its value at the window's start (first row = +1, the window's end = near
  0); only the window's best (= first) detection counts; a window with no detection costs `fnWeight`;
- a detection outside every window costs `fpWeight` times the scaled sigmoid of its distance past the previous
  window's end in window widths (just after a window: almost free; far after or before any window: -1);
- the probationary period (the first 15% of the rows, at most 750) is not scored;
- normalized over files: 100 * (S - S_null) / (S_perfect - S_null), S_perfect = the number of windows,
  S_null = -fnWeight * the number of windows.
Pure numpy/pandas; reads the NAB copy's files; trains nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PROBATION_FRACTION = 0.15


@dataclass(frozen=True)
class Profile:
    """One cost matrix of config/profiles.json."""

    name: str
    tp: float
    fp: float
    fn: float


@dataclass(frozen=True)
class FileLabels:
    """What the scorer needs of one file: per row, the window it is in (-1: none) and its unweighted score."""

    window_of_row: np.ndarray
    unweighted: np.ndarray
    n_windows: int
    probation: int

    @property
    def rows(self) -> int:
        return len(self.window_of_row)


@dataclass(frozen=True)
class FileScore:
    score: float
    tp: int
    fp: int
    fn: int


def load_profiles(root: Path) -> dict[str, Profile]:
    raw = json.loads((root / "config" / "profiles.json").read_text())
    return {name: Profile(name, m["CostMatrix"]["tpWeight"], m["CostMatrix"]["fpWeight"],
                          m["CostMatrix"]["fnWeight"]) for name, m in ((n, raw[n]) for n in PROFILES)}


def load_windows(root: Path) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    raw = json.loads((root / "labels" / "combined_windows.json").read_text())
    return {name: [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in wins] for name, wins in raw.items()}


def probation_rows(n_rows: int) -> int:
    """NAB's probationary period: 15% of the file, at most 15% of 5,000 rows."""
    return int(min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_FRACTION * 5000))


def scaled_sigmoid(position: float) -> float:
    """2 / (1 + e^(5y)) - 1: +0.987 at the window's start (y=-1), 0 at its end, -1 from 3 widths past it."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)  # a detection at a window's first row earns tpWeight exactly


def label_rows(timestamps: pd.Series, windows: list[tuple[pd.Timestamp, pd.Timestamp]]) -> FileLabels:
    """Walk the rows once, as NAB's sweeper does: inside a window the position relative to its end, after one
    the distance past it, before the first window -1."""
    times = pd.to_datetime(timestamps).reset_index(drop=True)
    n = len(times)
    window_of_row = np.full(n, -1, dtype=np.int64)
    unweighted = np.empty(n, dtype=np.float64)
    bounds = []
    for start, end in sorted(windows):
        left = int(np.searchsorted(times.values, np.datetime64(start), side="left"))
        right = int(np.searchsorted(times.values, np.datetime64(end), side="right")) - 1
        bounds.append((left, right))
    current = 0
    prev_right: int | None = None
    prev_width = 0.0
    for i in range(n):
        while current < len(bounds) and i > bounds[current][1]:
            prev_right, prev_width = bounds[current][1], float(bounds[current][1] - bounds[current][0] + 1)
            current += 1
        if current < len(bounds) and bounds[current][0] <= i <= bounds[current][1]:
            left, right = bounds[current]
            window_of_row[i] = current
            unweighted[i] = scaled_sigmoid(-(right - i + 1) / float(right - left + 1))
        elif prev_right is None:
            unweighted[i] = -1.0
        else:
            unweighted[i] = scaled_sigmoid(abs(prev_right - i) / (prev_width - 1.0))
    return FileLabels(window_of_row, unweighted, len(bounds), probation_rows(n))


def score_detections(labels: FileLabels, detected: np.ndarray, profile: Profile) -> FileScore:
    """The raw NAB score of one file for a boolean detection per row."""
    detected = np.asarray(detected, dtype=bool)
    if detected.shape != (labels.rows,):
        raise ValueError(f"{detected.shape[0]} detections for {labels.rows} rows")
    scored = np.arange(labels.rows) >= labels.probation
    windows = set(labels.window_of_row[scored & (labels.window_of_row >= 0)].tolist())
    best = {w: -profile.fn for w in windows}
    hits = detected & scored
    outside = hits & (labels.window_of_row < 0)
    fp_score = float(np.sum(labels.unweighted[outside]) * profile.fp)
    for i in np.flatnonzero(hits & (labels.window_of_row >= 0)):
        w = int(labels.window_of_row[i])
        best[w] = max(best[w], labels.unweighted[i] * profile.tp / MAX_TP)
    tp = sum(1 for w in best.values() if w > -profile.fn)
    return FileScore(fp_score + sum(best.values()), tp, int(outside.sum()), len(best) - tp)


def normalized(total: float, n_windows: int, profile: Profile) -> float:
    """NAB's normalization over a set of files: null = 0, perfect = 100."""
    null = -profile.fn * n_windows
    if n_windows == 0:
        return float("nan")
    return 100.0 * (total - null) / (n_windows - null)


def onsets(alerting: np.ndarray) -> np.ndarray:
    """The first reading of each alert episode: what pages a user."""
    alerting = np.asarray(alerting, dtype=bool)
    previous = np.concatenate([[False], alerting[:-1]])
    return alerting & ~previous


def published_scores(root: Path, detector: str, profile: str) -> dict[str, float]:
    """Per-file raw scores of a published detector (results/<detector>/<detector>_<profile>_scores.csv)."""
    table = pd.read_csv(root / "results" / detector / f"{detector}_{profile}_scores.csv")
    table = table[table["File"] != "Totals"]
    return dict(zip(table["File"], table["Score"].astype(float), strict=True))


def nab_root() -> Path | None:
    """The NAB copy: $EDGEPIPE_NAB, else `../shared/nab` beside the repository (or beside its worktree folder)."""
    import os

    from training.paths import PROJECT_ROOT

    given = os.environ.get("EDGEPIPE_NAB")
    candidates = [Path(given)] if given else [PROJECT_ROOT.parent / "shared" / "nab",
                                              PROJECT_ROOT.parent.parent / "shared" / "nab"]
    return next((c for c in candidates if (c / "labels" / "combined_windows.json").exists()), None)
