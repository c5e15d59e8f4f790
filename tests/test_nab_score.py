"""The NAB scorer (training/quality/nab_score.py) against NAB's own numbers: numenta's per-row output for 11
files, thresholded at its published threshold, must give its published per-file score in each profile."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from training.quality import nab_score as ns

ROOT = ns.nab_root()
pytestmark = pytest.mark.skipif(ROOT is None, reason="the NAB copy (../shared/nab or $EDGEPIPE_NAB) is not here")


def oracle_files() -> list[str]:
    if ROOT is None:
        return []
    return sorted(f"{f.parent.name}/{f.name}" for f in (ROOT / "results" / "numenta").glob("*/numenta_*.csv"))


@pytest.mark.parametrize("oracle", oracle_files())
def test_numenta_published_score_reproduced(oracle: str) -> None:
    category, filename = oracle.split("/")
    name = f"{category}/{filename.removeprefix('numenta_')}"
    rows = pd.read_csv(ROOT / "results" / "numenta" / oracle)
    labels = ns.label_rows(rows["timestamp"], ns.load_windows(ROOT)[name])
    thresholds = json.loads((ROOT / "config" / "thresholds.json").read_text())["numenta"]
    for profile in ns.load_profiles(ROOT).values():
        detected = rows["anomaly_score"].to_numpy() >= thresholds[profile.name]["threshold"]
        got = ns.score_detections(labels, detected, profile).score
        assert got == pytest.approx(ns.published_scores(ROOT, "numenta", profile.name)[name], abs=0.01)


def test_normalization_of_published_totals() -> None:
    """numenta's 51 published per-file scores normalize to the README's 73.0 / 65.8 / 76.8."""
    n_windows = sum(len(w) for w in ns.load_windows(ROOT).values())
    got = [ns.normalized(sum(ns.published_scores(ROOT, "numenta", p.name).values()), n_windows, p)
           for p in ns.load_profiles(ROOT).values()]
    assert np.round(got, 1).tolist() == [73.0, 65.8, 76.8]


def test_rules_on_a_small_file() -> None:
    """Probation not scored; first row of a window = +tp; only the window's best detection; FP before any window
    costs fpWeight; a missed window costs fnWeight."""
    times = pd.Series(pd.date_range("2020-01-01", periods=100, freq="5min"))
    windows = [(times[40], times[49]), (times[80], times[89])]
    labels = ns.label_rows(times, windows)
    assert labels.probation == 15
    profile = ns.Profile("standard", 1.0, 0.11, 1.0)
    detected = np.zeros(100, dtype=bool)
    detected[[3, 20, 40, 45]] = True  # probation, FP before any window, window start, later in the same window
    got = ns.score_detections(labels, detected, profile)
    assert (got.tp, got.fp, got.fn) == (1, 1, 1)
    assert got.score == pytest.approx(1.0 - 0.11 - 1.0)
    assert ns.onsets(np.array([0, 1, 1, 0, 1], dtype=bool)).tolist() == [False, True, False, False, True]
