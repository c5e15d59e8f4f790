"""Alerts with a stated false-alarm rate: conformal calibration of anomaly scores (numpy + stdlib only).

Why this exists: a percentile threshold says nothing a user can plan with. What a user can
state is "at most F false alerts per day". Given the scores of a period the user declares
normal (held out from training, or collected on the device by `cmd/calibrate`), this module

- turns a score into a **conformal p-value**: p(s) = (1 + #{calibration >= s}) / (N + 1). If the
  normal stream is exchangeable with the calibration period, P(p <= a) <= a for a new score,
  whatever the model. Below 1/(N + 1) no rank can speak, so the top of the calibration scores
  is fitted with a generalized Pareto tail (peaks over a threshold) and p-values beyond it are
  extrapolated; the manifest says which part a threshold came from.
- derives the **k-of-n debounce** from the reading period (a short span of readings must agree)
  and the **threshold** from F and the reading rate. The statistic calibrated is the one the
  rule compares, the k-th largest of the last n scores, so the rate holds for the debounced
  rule itself, however strongly neighbouring scores are correlated (overlapping windows).
  Every false alert episode starts with an alerting reading, so episodes per day are at most
  the alerting readings' rate: the threshold keeps P(rule active) <= F / readings-per-day.
The **observed vs expected** bookkeeping (episodes, the Poisson tail) is `edge.alerts.ledger`.

The training side imports this module to write the manifest; the edge uses the same code to
read it and to recalibrate on the device, so both compute the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SECONDS_PER_DAY = 86400.0
#: the most false alarms a day a user may ask for (config, cmd/calibrate, the trainer): beyond a reading a tenth of a
#: second, no rate at all
MAX_FALSE_ALARMS_PER_DAY = 1e6
#: scores kept exactly at the top of the table (the tail decides thresholds, the body only p-values)
EXACT_TOP = 256
#: the debounce asks neighbouring readings within this span to agree (2-of-3 at 5-minute readings)
DEBOUNCE_SPAN_S = 15 * 60.0
MAX_DEBOUNCE_N = 5
MIN_TAIL = 10  # fewer top scores than this: no tail fit, no p-value below 1/(N + 1)


@dataclass(frozen=True)
class Tail:
    """Generalized Pareto fit of the scores above `start` (the `count` largest of the calibration set)."""

    start: float
    scale: float
    shape: float
    count: int

    def survival(self, excess: float) -> float:
        """P(score - start > excess | score > start)."""
        if excess <= 0:
            return 1.0
        if self.shape < 1e-9:
            return math.exp(-excess / self.scale)
        return (1.0 + self.shape * excess / self.scale) ** (-1.0 / self.shape)

    def inverse(self, survival: float) -> float:
        """The excess over `start` whose survival is `survival` (0 < survival <= 1)."""
        if self.shape < 1e-9:
            return -self.scale * math.log(survival)
        return self.scale / self.shape * (survival ** -self.shape - 1.0)


def fit_tail(sorted_scores: np.ndarray, count: int | None = None) -> Tail | None:
    """Method-of-moments generalized Pareto fit to the `count` largest scores (default: about the top 5%).

    The shape is clipped to [0, 0.5]: a negative shape (a bounded tail) would promise that no
    normal score ever exceeds some level, which a short calibration period cannot show, and
    beyond 0.5 the moments do not exist. Exponential (shape 0) is the tail of squared Gaussian
    errors, the autoencoder's score when the model fits.
    """
    n = len(sorted_scores)
    count = count if count is not None else min(n // 4, max(MIN_TAIL * 2, n // 20))
    if count < MIN_TAIL:
        return None
    start = float(sorted_scores[n - count - 1]) if n > count else float(sorted_scores[0])
    excess = np.asarray(sorted_scores[n - count:], np.float64) - start
    mean, var = float(excess.mean()), float(excess.var(ddof=1))
    if mean <= 0:
        return None
    shape = 0.5 * (1.0 - mean * mean / var) if var > 0 else 0.0
    shape = min(max(shape, 0.0), 0.5)
    scale = mean * (1.0 - shape)
    return Tail(start, max(scale, 1e-12), shape, count)


@dataclass(frozen=True)
class Calibration:
    """Scores of a normal period, kept as a table: `values` ascending and `exceed[i]` = #{scores >= values[i]}.

    Up to `EXACT_TOP` largest scores are kept exactly; below them the table keeps evenly spaced
    order statistics, so p-values there are rounded up to the table point below (conservative).
    """

    values: tuple[float, ...]
    exceed: tuple[int, ...]
    count: int
    tail: Tail | None = None
    exact_from: int = 0  # table index from which every calibration score is in the table

    @classmethod
    def fit(cls, scores: Sequence[float] | np.ndarray, max_points: int = 512,
            tail_count: int | None = None) -> Calibration:
        s = np.sort(np.asarray(scores, np.float64).ravel())
        if len(s) == 0 or not np.all(np.isfinite(s)):
            raise ValueError("calibration needs at least one finite score")
        n = len(s)
        # exceed = n - (index of the first equal value): ties share the larger count
        first = np.searchsorted(s, s, side="left")
        exceed = n - first
        tail = fit_tail(s, tail_count)
        exact_from = 0
        if n > max_points:
            top = min(EXACT_TOP, max_points // 2)
            body = np.unique(np.linspace(0, n - top - 1, max_points - top).round().astype(int))
            keep = np.concatenate([body, np.arange(n - top, n)])
            s, exceed, exact_from = s[keep], exceed[keep], len(body)
        return cls(tuple(float(v) for v in s), tuple(int(e) for e in exceed), n, tail, exact_from)

    def count_at_least(self, score: float) -> int:
        """#{calibration scores >= score}; in the thinned body, the count of the table point below (an upper bound)."""
        i = int(np.searchsorted(np.asarray(self.values), score, side="left"))
        if i < len(self.values) and (i > self.exact_from or self.values[i] == score or i == 0):
            return self.exceed[i]
        if i == len(self.values) and i > self.exact_from:
            return 0
        return self.exceed[i - 1]

    def p_value(self, score: float) -> float:
        """Conformal p-value of a new score; where fewer than `MIN_TAIL` calibration scores are >= it
        (the ranks too coarse), the fitted tail's estimate."""
        at_least = self.count_at_least(score)
        if self.tail is not None and 1 + at_least < MIN_TAIL:
            return (1 + self.tail.count) / (self.count + 1) * self.tail.survival(score - self.tail.start)
        return (1 + at_least) / (self.count + 1)

    def threshold(self, alpha: float) -> tuple[float, str]:
        """The lowest threshold t with P(new score > t) <= alpha, and where it came from.

        "conformal": an order statistic of the calibration scores (exact under exchangeability);
        "tail": the generalized Pareto extrapolation, when fewer than `MIN_TAIL` calibration scores
        would lie above the threshold (the ranks resolve alpha too coarsely, or not at all);
        "max": alpha is below 1/(N + 1) and there is no tail: the largest score, whose rate is 1/(N + 1).
        """
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        n = self.count
        if self.tail is not None and alpha * (n + 1) < MIN_TAIL:  # fewer than ~10 ranks above: too coarse
            survival = alpha * (n + 1) / (1 + self.tail.count)
            return self.tail.start + self.tail.inverse(survival), "tail"
        allowed = math.floor(alpha * (n + 1)) - 1  # at most this many calibration scores may lie above t
        if allowed < 0:
            return self.values[-1], "max"
        # t = the (allowed + 1)-th largest score: scores > t are strictly above it
        values, exceed = np.asarray(self.values), np.asarray(self.exceed)
        index = int(np.searchsorted(-exceed, -(allowed + 1), side="right")) - 1  # last point with exceed >= allowed+1
        return float(values[max(index, 0)]), "conformal"

    def rate(self, threshold: float) -> float:
        """The expected share of normal scores above `threshold` (the p-value just above it)."""
        return self.p_value(float(np.nextafter(threshold, np.inf)))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"count": self.count, "values": list(self.values), "exceed": list(self.exceed),
                                "exact_from": self.exact_from}
        if self.tail is not None:
            data["tail"] = {"start": self.tail.start, "scale": self.tail.scale, "shape": self.tail.shape,
                            "count": self.tail.count}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        tail = data.get("tail")
        return cls(tuple(float(v) for v in data["values"]), tuple(int(e) for e in data["exceed"]),
                   int(data["count"]), Tail(float(tail["start"]), float(tail["scale"]), float(tail["shape"]),
                                            int(tail["count"])) if tail else None,
                   int(data.get("exact_from", 0)))


def debounce_for_period(period_s: float | None) -> tuple[int, int]:
    """(k, n): alert when k of the last n scores are above the threshold.

    n counts the readings within `DEBOUNCE_SPAN_S` (at least 1, at most `MAX_DEBOUNCE_N`), k is
    a majority of them: a single glitching reading does not alert, and slow streams (hourly)
    are not made to wait hours for a second opinion. Without a clock (period None), 2-of-3.
    """
    if period_s is None or not math.isfinite(period_s) or period_s <= 0:
        n = 3
    else:
        n = int(min(MAX_DEBOUNCE_N, max(1, math.floor(DEBOUNCE_SPAN_S / period_s + 1e-9))))
    return n // 2 + 1, n


def rule_statistic(scores: Sequence[float] | np.ndarray, k: int, n: int) -> np.ndarray:
    """The k-th largest of the last n scores at each step (-inf until k scores have arrived).

    The edge's k-of-n rule ("at least k of the last n scores > t") is active exactly when this
    statistic is > t, so calibrating it calibrates the debounced rule.
    """
    s = np.asarray(scores, np.float64).ravel()
    out = np.full(len(s), -np.inf)
    for t in range(min(n - 1, len(s))):  # the rule's history is still filling up
        if t + 1 >= k:
            out[t] = np.sort(s[:t + 1])[t + 1 - k]
    if len(s) >= n:
        full = np.lib.stride_tricks.sliding_window_view(s, n)
        out[n - 1:] = np.partition(full, n - k, axis=1)[:, n - k]
    return out


@dataclass(frozen=True)
class AlertPlan:
    """What the edge needs to raise alerts at a stated false-alarm rate (the manifest's `postprocess`)."""

    false_alarms_per_day: float | None
    period_s: float | None
    k: int
    n: int
    threshold: float
    method: str  # "conformal", "tail" or "max" (see Calibration.threshold), "floor" (see plan_alerts)
    alpha: float  # target share of readings with the rule active
    expected_active_rate: float  # the calibration's estimate at `threshold`
    calibration: Calibration

    @property
    def readings_per_day(self) -> float | None:
        return SECONDS_PER_DAY / self.period_s if self.period_s else None

    @property
    def expected_per_day(self) -> float | None:
        """Expected false alert episodes per day (an upper bound: each episode has at least one active reading)."""
        rpd = self.readings_per_day
        return self.expected_active_rate * rpd if rpd else None

    @property
    def expected_per_1000(self) -> float:
        """Expected false alert episodes per 1,000 readings (an upper bound), for streams without a clock."""
        return self.expected_active_rate * 1000

    def at_rate(self, false_alarms_per_day: float, floor: float = 0.0) -> AlertPlan:
        """The same calibration and debounce planned for another rate per day (a config's new
        `false_alarms_per_day`): no new data needed, the calibration table holds the ranks. Needs a clock."""
        if not self.period_s:
            raise ValueError("a plan without a reading period cannot be re-planned for a rate per day")
        alpha = min(max(false_alarms_per_day * self.period_s / SECONDS_PER_DAY, 1e-12), 0.5)
        threshold, method = self.calibration.threshold(alpha)
        if threshold < floor:
            threshold, method = floor, "floor"
        return AlertPlan(false_alarms_per_day, self.period_s, self.k, self.n, threshold, method, alpha,
                         self.calibration.rate(threshold), self.calibration)

    def to_json(self) -> dict[str, Any]:
        return {"false_alarms_per_day": self.false_alarms_per_day, "period_s": self.period_s,
                "readings_per_day": self.readings_per_day, "debounce_k": self.k, "debounce_n": self.n,
                "threshold": self.threshold, "method": self.method, "alpha": self.alpha,
                "expected_active_rate": self.expected_active_rate,
                "expected_false_alerts_per_day": self.expected_per_day,
                "expected_false_alerts_per_1000": self.expected_per_1000,
                "statistic": "k-th largest of the last n scores", "calibration": self.calibration.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertPlan:
        return cls(data.get("false_alarms_per_day"), data.get("period_s"), int(data["debounce_k"]),
                   int(data["debounce_n"]), float(data["threshold"]), str(data["method"]), float(data["alpha"]),
                   float(data["expected_active_rate"]), Calibration.from_json(data["calibration"]))


def score_resolution(input_step: float) -> float:
    """The smallest reconstruction score a model resolves: one input quantization step (`input_step`, the
    input tensor's scale; 0 for a float model: float32's own resolution) on every number of the input.
    The floor of every planned threshold (`plan_alerts`' `floor`)."""
    step = input_step if input_step > 0 else float(np.finfo(np.float32).eps)
    return float(step) ** 2


def plan_alerts(scores: Sequence[float] | np.ndarray, false_alarms_per_day: float | None = None,
                period_s: float | None = None, alpha: float | None = None,
                debounce: tuple[int, int] | None = None, floor: float = 0.0) -> AlertPlan:
    """Calibrate a k-of-n rule on the scores of a normal period, in reading order.

    The target is `false_alarms_per_day` with the reading period `period_s` (alpha = F / readings
    per day), or `alpha` directly (a share of readings, for streams without a clock). The debounce
    is derived from the period unless given. `floor` is the smallest score the model can tell from
    zero (the trainer: one input quantization step on every number): a normal period whose scores
    all lie below it (a flat line reconstructed exactly) gets that threshold, method "floor", instead
    of 0.0, which every rule refuses.
    """
    k, n = debounce if debounce is not None else debounce_for_period(period_s)
    if alpha is None:
        if false_alarms_per_day is None or not period_s:
            raise ValueError("give alpha, or false_alarms_per_day with the reading period")
        alpha = false_alarms_per_day * period_s / SECONDS_PER_DAY
    alpha = min(max(alpha, 1e-12), 0.5)
    statistic = rule_statistic(scores, k, n)
    calibration = Calibration.fit(statistic[np.isfinite(statistic)])
    threshold, method = calibration.threshold(alpha)
    if threshold < floor:
        threshold, method = floor, "floor"
    return AlertPlan(false_alarms_per_day, period_s, k, n, threshold, method, alpha,
                     calibration.rate(threshold), calibration)
