"""edge/alerts/calibration.py: conformal p-values, thresholds from a false-alarm budget, the k-of-n statistic,
and the observed-vs-expected bookkeeping. numpy only, no model: fast."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from edge.alerts.calibration import AlertPlan, Calibration, debounce_for_period, plan_alerts, rule_statistic
from edge.alerts.ledger import AlertLedger, episodes, poisson_tail


def test_p_value_is_the_conformal_rank() -> None:
    cal = Calibration.fit([1.0, 2.0, 2.0, 3.0, 4.0], tail_count=0)
    assert cal.p_value(0.5) == pytest.approx(6 / 6)
    assert cal.p_value(2.0) == pytest.approx((1 + 4) / 6)  # ties count as >=
    assert cal.p_value(3.5) == pytest.approx(2 / 6)
    assert cal.p_value(9.0) == pytest.approx(1 / 6)  # no rank below 1/(N + 1) without a tail


def test_threshold_is_the_order_statistic_that_keeps_alpha() -> None:
    scores = np.arange(1.0, 100.0)  # N = 99, N + 1 = 100
    cal = Calibration.fit(scores, tail_count=0)
    t, method = cal.threshold(0.05)
    # at most floor(0.05 * 100) - 1 = 4 calibration scores may lie above t: t is the 5th largest
    assert (t, method) == (95.0, "conformal")
    assert cal.p_value(np.nextafter(t, np.inf)) <= 0.05 < cal.p_value(t)
    assert cal.threshold(0.001) == (99.0, "max")


def test_thinned_table_keeps_the_top_exact_and_round_trips() -> None:
    scores = np.random.default_rng(0).exponential(size=20_000)
    full, thin = Calibration.fit(scores, max_points=10**6), Calibration.fit(scores, max_points=400)
    assert len(thin.values) <= 400 and thin.count == 20_000
    for alpha in (0.01, 0.005):  # inside the exact top
        assert thin.threshold(alpha) == full.threshold(alpha)
    for s in (0.1, 1.0, 3.0):  # body: rounded up, never below the exact p-value
        assert full.p_value(s) <= thin.p_value(s) <= full.p_value(s) + 2 * 20_000 / (400 - 256) / 20_001
    again = Calibration.from_json(thin.to_json())
    assert again == thin


def test_conformal_threshold_meets_the_stated_rate_within_its_band() -> None:
    """Calibrate on N held-out normal scores, then count exceedances on a long fresh normal stream.

    The realised rate of a conformal threshold is Beta(l, N + 1 - l) with l = floor(alpha (N + 1)), and
    the fresh stream adds binomial noise: the observed rate must lie in the 99.9% band of both, and
    the band's centre is at most alpha.
    """
    rng = np.random.default_rng(11)
    n_cal, n_fresh, alpha = 3000, 400_000, 0.01
    cal = Calibration.fit(rng.gamma(2.0, size=n_cal), tail_count=0)
    t, method = cal.threshold(alpha)
    assert method == "conformal"
    observed = float(np.mean(rng.gamma(2.0, size=n_fresh) > t))
    rank = math.floor(alpha * (n_cal + 1))
    mean = rank / (n_cal + 1)
    assert mean <= alpha
    sd = math.sqrt(stats.beta(rank, n_cal + 1 - rank).var() + mean * (1 - mean) / n_fresh)
    assert abs(observed - mean) <= 3.3 * sd
    assert cal.rate(t) == pytest.approx(mean)


def test_tail_extrapolates_below_one_over_n() -> None:
    """alpha = 1e-4 from 2,000 exponential scores: the ranks cannot say it, the fitted tail can."""
    rng = np.random.default_rng(3)
    cal = Calibration.fit(rng.exponential(size=2000))
    t, method = cal.threshold(1e-4)
    assert method == "tail" and cal.tail is not None and cal.tail.shape < 0.2
    assert abs(t - math.log(1e4)) < 1.5  # exact: ln(10^4) = 9.21
    observed = float(np.mean(rng.exponential(size=2_000_000) > t))
    assert 1e-4 / 5 < observed < 1e-4 * 5


def test_rule_statistic_matches_the_k_of_n_rule() -> None:
    rng = np.random.default_rng(5)
    scores = rng.normal(size=400)
    k, n, t = 2, 3, 0.8
    history: list[float] = []
    rule = []
    for s in scores:  # the edge's AnomalyRule, written out
        history = (history + [s])[-n:]
        rule.append(sum(h > t for h in history) >= k)
    assert np.array_equal(rule_statistic(scores, k, n) > t, np.array(rule))
    assert rule_statistic([5.0], 2, 3)[0] == -np.inf


def test_debounce_follows_the_reading_period() -> None:
    assert debounce_for_period(300) == (2, 3)  # 5-minute readings: 2 of 3 within 15 minutes
    assert debounce_for_period(3600) == (1, 1)  # hourly: no waiting hours for a second opinion
    assert debounce_for_period(1.0) == (3, 5)  # fast streams: capped at 3 of 5
    assert debounce_for_period(None) == (2, 3)


def test_plan_meets_false_alarms_per_day_on_a_correlated_stream() -> None:
    """Scores of overlapping windows are correlated; the plan calibrates the debounced statistic itself,
    so alert episodes on a fresh normal stream stay at or below the stated rate."""
    rng = np.random.default_rng(8)

    def stream(length: int) -> np.ndarray:
        noise = rng.normal(size=length + 7) ** 2
        return np.convolve(noise, np.ones(8) / 8, mode="valid")  # window-8 smoothing: strong correlation

    plan = plan_alerts(stream(20_000), false_alarms_per_day=2.0, period_s=300)  # 288 readings a day
    assert (plan.k, plan.n) == (2, 3) and plan.method == "conformal"
    assert plan.alpha == pytest.approx(2.0 / 288)
    assert plan.expected_per_day <= 2.0
    fresh = stream(288 * 400)  # 400 days
    active = rule_statistic(fresh, plan.k, plan.n) > plan.threshold
    per_day = episodes(active) / 400
    assert per_day <= plan.expected_per_day * 1.3
    again = AlertPlan.from_json(plan.to_json())
    assert again.threshold == plan.threshold and again.calibration == plan.calibration


def test_ledger_counts_episodes_and_flags_an_excess() -> None:
    ledger = AlertLedger(expected_active_rate=0.001, period_s=60)
    for i in range(10_000):
        ledger.update(active=i % 1000 in (5, 6, 7), ts=60.0 * i)  # 10 episodes of 3 readings
    s = ledger.summary()
    assert s["episodes"] == 10 and s["days"] == pytest.approx(9999 * 60 / 86400)
    assert s["expected_episodes"] == pytest.approx(10.0)
    assert s["excess_p_value"] > 0.3  # 10 seen, 10 expected: nothing to report
    loud = AlertLedger(expected_active_rate=0.0001)
    for i in range(10_000):
        loud.update(active=i % 500 == 0)
    assert loud.summary()["days"] is None and loud.summary()["observed_per_1000"] == pytest.approx(2.0)
    assert loud.summary()["excess_p_value"] < 1e-6  # 20 episodes where 1 was expected


def test_poisson_tail() -> None:
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(3, 3.0) == pytest.approx(1 - stats.poisson(3.0).cdf(2))
    assert poisson_tail(1, 0.0) == 0.0
