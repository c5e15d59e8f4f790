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
from training.series_base import base_rmse, fit_airline
from training.series_transform import Candidate, TransformSpecError, choose_base, parse_transform, pick


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


def test_auto_takes_log_only_for_positive_series_and_ties_go_to_none() -> None:
    values = load_series("airline").values.astype(np.float64)
    chosen = choose_base(values, 96, 12)
    assert set(chosen.record["validation_rmse"]) == {"log", "none"}
    assert (chosen.base.kind, chosen.base.log) == ("airline", True)  # log clearly better on the held-out months
    assert -1 < chosen.base.theta < 0 and -1 < chosen.base.seasonal_theta < 0
    with_zero = values.copy()
    with_zero[40] = 0.0
    assert set(choose_base(with_zero, 96, 12).record["validation_rmse"]) == {"none"}
    assert pick({"log": {"airline": 10.0, "seasonal_naive": 20.0},
                 "none": {"airline": 10.2, "seasonal_naive": 20.0}}) == ("none", "airline")  # within 3%: simpler
    assert pick({"log": {"airline": 10.0, "seasonal_naive": 20.0},
                 "none": {"airline": 11.0, "seasonal_naive": 20.0}}) == ("log", "airline")
    assert pick({"none": {"airline": None, "seasonal_naive": 20.0}}) == ("none", "seasonal_naive")  # fit failed
    assert pick({"none": {"airline": 21.0, "seasonal_naive": 20.0}}) == ("none", "seasonal_naive")


def test_the_base_recursion_repeats_statsmodels_sarima() -> None:
    """The device's two-number recursion forecasts the airline test months as statsmodels' SARIMA does."""
    values = load_series("airline").values.astype(np.float64)
    train_size = int(len(values) * 0.67)
    _, test = lecture_targets(len(values), train_size)
    base = fit_airline(values[:train_size], 12, True)
    sarima = baseline_metrics(values, train_size, 12, test)["baselines_rmse"]["sarima"]
    assert base_rmse(base, values, int(test[0]), int(test[-1]) + 1) == pytest.approx(sarima, rel=0.01)


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
    csv = write_series(tmp_path / "zeros.csv", counts_with_zeros(120))
    out = tmp_path / "models"
    assert main(["lstm", "--dataset", f"{csv}:count", "--epochs", "2", "--out", str(out),
                 "--report", str(tmp_path / "report")]) == 0
    entry = read_manifest(out / "manifest.json").get("lstm")
    assert entry.postprocess["base"]["log"] is False
    assert entry.training["requested"] == "auto" and entry.training["season"] == 12
    assert set(entry.training["validation_rmse"]) == {"none"}
    assert set(entry.metrics["baselines_rmse"]) >= {"persistence", "seasonal_naive", "sarima"}
    assert "naive_growth" not in entry.metrics["baselines_rmse"]  # a ratio of counts that can be 0


@pytest.mark.slow
def test_a_short_series_trains_with_the_stated_default(tmp_path: Path, caplog) -> None:
    """72 months (48 to train on): validation cannot decide, so the default is taken and said -- not a refusal."""
    csv = write_series(tmp_path / "short.csv", load_series("airline").values[:72], start_year=1949)
    out = tmp_path / "models"
    assert main(["lstm", "--dataset", f"{csv}:count", "--epochs", "2", "--out", str(out),
                 "--report", str(tmp_path / "report")]) == 0
    assert "-> the default: log (every value > 0), airline base" in caplog.text
    entry = read_manifest(out / "manifest.json").get("lstm")
    assert "48 training values" in entry.training["default_because"]
    assert entry.postprocess["base"]["kind"] == "airline" and entry.postprocess["base"]["log"] is True
    assert entry.metrics["test_rmse"] <= entry.metrics["baselines_rmse"]["seasonal_naive"]


def test_explicit_log_on_a_series_with_zeros_is_a_clear_error(tmp_path: Path, caplog) -> None:
    csv = write_series(tmp_path / "zeros.csv", counts_with_zeros())
    assert main(["lstm", "--dataset", f"{csv}:count", "--transform", "log", "--out", str(tmp_path)]) == 2
    assert "--transform log needs values > 0 (minimum 0)" in caplog.text
    assert not list(tmp_path.glob("*.tflite"))
