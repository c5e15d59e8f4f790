"""`--transform auto|SPEC` for the forecaster, the season from the CSV's dates, and the baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.models.manifest import read_manifest
from training.cli import main
from training.datasets.series import load_series, load_series_csv
from training.quality.baselines import baseline_metrics, winner
from training.quality.evaluation import lecture_targets
from training.series_transform import Candidate, TransformSpecError, candidates, parse_transform


def write_series(path: Path, values: np.ndarray, start_year: int = 2000) -> Path:
    lines = ["month,count", *(f"{start_year + i // 12}-{i % 12 + 1:02d},{v:g}" for i, v in enumerate(values))]
    path.write_text("\n".join(lines) + "\n")
    return path


def counts_with_zeros(n: int = 84) -> np.ndarray:
    """A seasonal monthly count that is 0 in some months of every year (log would fail on the edge)."""
    months = np.arange(n)
    rng = np.random.default_rng(3)
    return np.maximum(0, np.round(6 + 8 * np.sin(2 * np.pi * months / 12) + rng.normal(0, 1, n))) + 0.0  # no -0


@pytest.mark.parametrize("spec,expected", [
    ("auto", None), ("none", Candidate(False, ())), ("log", Candidate(True, ())), ("d1", Candidate(False, (1,))),
    ("log+d1+d12", Candidate(True, (1, 12))), ("LOG+D12", Candidate(True, (12,)))])
def test_transform_specs_parse(spec: str, expected: Candidate | None) -> None:
    assert parse_transform(spec) == expected
    if expected is not None:
        assert parse_transform(expected.spec) == expected  # the manifest's name reads back


@pytest.mark.parametrize("spec", ["d0", "d1+log", "sqrt", "log+log", ""])
def test_bad_transform_specs_say_what_is_expected(spec: str) -> None:
    with pytest.raises(TransformSpecError, match="expected auto, none, or log and/or dLAG"):
        parse_transform(spec)


def test_log_is_a_candidate_only_for_positive_series() -> None:
    positive = load_series("airline").values.astype(np.float64)[:96]
    tried, _ = candidates(positive, 12)
    assert any(c.log for c in tried)
    assert {c.differences for c in tried} == {(1,), (1, 12)}  # a trending level always gets the first difference
    with_zero = positive.copy()
    with_zero[40] = 0.0
    tried, p_values = candidates(with_zero, 12)
    assert tried and not any(c.log for c in tried) and set(p_values) == {"none"}
    stationary, _ = candidates(counts_with_zeros(), 12)
    assert {c.differences for c in stationary} == {(), (12,)}  # no trend: no first difference forced


def test_season_comes_from_the_dates(tmp_path: Path) -> None:
    assert load_series("airline").season == 12
    quarterly = tmp_path / "q.csv"
    quarterly.write_text("quarter,v\n" + "".join(f"{2000 + i // 4}Q{i % 4 + 1},{i + 1}\n" for i in range(20)))
    assert (load_series_csv(quarterly).frequency, load_series_csv(quarterly).season) == ("quarterly", 4)
    bare = tmp_path / "bare.csv"
    bare.write_text("v\n" + "".join(f"{i}\n" for i in range(20)))
    assert load_series_csv(bare).season is None


def test_baselines_on_the_airline_test_months() -> None:
    values = load_series("airline").values.astype(np.float64)
    train_size = int(len(values) * 0.67)
    _, test = lecture_targets(len(values), train_size)
    got = baseline_metrics(values, train_size, 12, test)["baselines_rmse"]
    assert got["persistence"] == pytest.approx(50.14, abs=0.01)
    assert got["seasonal_naive"] == pytest.approx(float(np.sqrt(np.mean((values[test - 12] - values[test]) ** 2))))
    assert got["naive_growth"] == pytest.approx(16.55, abs=0.01)  # y[t-1] y[t-12] / y[t-13]
    assert 13 < got["sarima"] < 16  # the airline model on log values, fitted on the training months
    assert winner(got, 15.37) == "sarima" and winner(got, 14.0) == "lstm"


@pytest.mark.slow
def test_auto_never_chooses_log_for_a_series_with_zeros(tmp_path: Path) -> None:
    csv = write_series(tmp_path / "zeros.csv", counts_with_zeros())
    out = tmp_path / "models"
    assert main(["lstm", "--dataset", f"{csv}:count", "--epochs", "2", "--out", str(out),
                 "--report", str(tmp_path / "report")]) == 0
    entry = read_manifest(out / "manifest.json").get("lstm")
    assert entry.preprocess["transform"]["log"] is False
    assert entry.training["requested"] == "auto" and entry.training["season"] == 12
    assert entry.training["validation_one_step_rmse"] and not any("log" in k for k in
                                                                  entry.training["validation_one_step_rmse"])
    assert set(entry.metrics["baselines_rmse"]) >= {"persistence", "seasonal_naive", "sarima"}
    assert "naive_growth" not in entry.metrics["baselines_rmse"]  # a ratio of counts that can be 0


def test_explicit_log_on_a_series_with_zeros_is_a_clear_error(tmp_path: Path, caplog) -> None:
    csv = write_series(tmp_path / "zeros.csv", counts_with_zeros())
    assert main(["lstm", "--dataset", f"{csv}:count", "--transform", "log+d12", "--out", str(tmp_path)]) == 2
    assert "the log transform needs values > 0 (minimum 0)" in caplog.text
    assert not list(tmp_path.glob("*.tflite"))
