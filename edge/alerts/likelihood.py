"""Anomaly likelihood: how surprising the recent scores are against the stream's own recent past (numpy + stdlib).

Why: a fixed threshold on a raw reconstruction error assumes the error's distribution on the device is the one
measured on the laptop; on real streams it drifts (load, season, an ageing sensor) and a threshold placed on a
few days of training rows fires daily. HTM's answer (Ahmad et al. 2017, "Unsupervised real-time anomaly
detection for streaming data"), used here: compare a short moving average of the scores with the distribution
of that average over a long rolling window of the same stream, and report a *surprise* = -log10(P(average this
high)). HTM takes P from a Gaussian fitted to the history (`tail="gaussian"`); the default takes it from the
average's rank in the history (a conformal p-value: a pattern that recurs daily is not rare, however many sigmas
it is), and from the Gaussian only beyond the history's top. The long window follows the stream, so the rule
holds its meaning when the scores' level drifts; the short average means one noisy reading is not an episode.

Scores are compared on a log scale (reconstruction errors are squared, heavy-tailed, positive), with a floor
on the spread so a flat stream (all errors equal) gives surprise 0, not a division by zero.
"""

from __future__ import annotations

import bisect
import collections
import math
from dataclasses import dataclass
from typing import Any

#: the largest surprise reported: P = 1e-12 (beyond it the Gaussian tail says nothing real)
MAX_SURPRISE = 12.0
LOG_FLOOR = 1e-12  # scores of 0 (a perfect reconstruction) are read as this on the log scale
TAILS = ("rank", "gaussian")


@dataclass(frozen=True)
class LikelihoodSpec:
    """The likelihood's windows, in readings (from the manifest's `postprocess.alerts.episode.likelihood`)."""

    short: int = 6  # readings averaged: the evidence one decision looks at
    long: int = 2000  # readings of history the average is compared with
    min_history: int = 100  # no surprise before this many averages are in the history
    min_spread: float = 0.05  # floor on the history's standard deviation (log10 units)
    learn_in_alert: bool = True  # whether readings inside an alert episode enter the history at once
    tail: str = "rank"  # "rank": the empirical rank in the history, Gaussian beyond its top; "gaussian": HTM's
    adopt_after: int = 0  # with learn_in_alert off: an alert lasting this many readings is a new normal (0: never)

    def __post_init__(self) -> None:
        if not 1 <= self.short <= self.long:
            raise ValueError(f"likelihood windows need 1 <= short <= long, got short={self.short}, long={self.long}")
        if not 2 <= self.min_history <= self.long:
            raise ValueError(f"likelihood min_history must be in [2, long={self.long}], got {self.min_history}")
        if self.tail not in TAILS:
            raise ValueError(f"likelihood tail must be one of {TAILS}, got {self.tail!r}")
        if not (math.isfinite(self.min_spread) and self.min_spread > 0):
            raise ValueError(f"likelihood min_spread must be a finite number > 0, got {self.min_spread}")
        if self.adopt_after < 0:
            raise ValueError(f"likelihood adopt_after must be >= 0 readings, got {self.adopt_after}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LikelihoodSpec:
        return cls(int(data["short"]), int(data["long"]), int(data["min_history"]), float(data["min_spread"]),
                   bool(data.get("learn_in_alert", True)), str(data.get("tail", "rank")),
                   int(data.get("adopt_after", 0)))

    def to_json(self) -> dict[str, Any]:
        return {"short": self.short, "long": self.long, "min_history": self.min_history,
                "min_spread": self.min_spread, "learn_in_alert": self.learn_in_alert, "tail": self.tail,
                "adopt_after": self.adopt_after}


def gaussian_surprise(z: float) -> float:
    """-log10 of the upper Gaussian tail P(Z > z), capped at MAX_SURPRISE; 0 for z <= 0 (not unusually high)."""
    if z <= 0:
        return 0.0
    tail = 0.5 * math.erfc(z / math.sqrt(2.0))
    return MAX_SURPRISE if tail <= 10 ** -MAX_SURPRISE else -math.log10(tail)


class AnomalyLikelihood:
    """Scores in, surprise out (None while the history is shorter than `min_history`)."""

    def __init__(self, spec: LikelihoodSpec) -> None:
        self.spec = spec
        self._recent: collections.deque[float] = collections.deque(maxlen=spec.short)
        self._history: collections.deque[float] = collections.deque(maxlen=spec.long)
        self._sorted: list[float] = []  # the history, sorted (for the rank)
        self._sum = 0.0
        self._sum_sq = 0.0
        self._learned = 0
        self._held: list[float] = []  # averages of the alert in progress, kept out of the history (for now)

    @property
    def warming(self) -> int:
        """Scores still to come before the first surprise (the history short of `min_history`)."""
        return max(0, self.spec.min_history - len(self._history))

    def update(self, score: float, in_alert: bool = False,
               levels: tuple[float, float] | None = None) -> float | None:
        """The surprise of the average of the last `short` scores, judged against the history before it; then
        the average joins the history, unless the spec keeps alerting readings out and this one is alerting:
        `in_alert` (the episode is open) and, given the rule's `levels` (on, off), only a reading at `on` or one
        at `off` inside the episode -- its quiet readings are normal ones and are learned."""
        self._recent.append(math.log10(max(score, LOG_FLOOR)))
        average = sum(self._recent) / len(self._recent)
        surprise = self._surprise(average)
        alerting = in_alert if levels is None else surprise is not None and (
            surprise >= levels[0] or (in_alert and surprise >= levels[1]))
        if self.spec.learn_in_alert or not alerting:
            if not in_alert:
                self._held.clear()  # the episode closed before it lasted `adopt_after`: a fault, never learned
            self._learn(average)
        else:
            self._hold(average)
        return surprise

    def _hold(self, average: float) -> None:
        """An average of an alerting reading. Learned at its value, a fault would teach the rule that faults are
        normal (the next one of its size would not page for as long as the history spans); left out, the history
        would lose its top and every later normal reading would look rarer than it is (more false alerts). So it
        is learned *censored*: at the history's top (it counts as high, not as how high), and the real value is
        held; once the alert has lasted `adopt_after` alerting readings it is a new normal (a moved set point, a
        new load) and the held values are learned too."""
        self._learn(min(average, self._sorted[-1]) if self._sorted else average)
        self._held.append(average)
        if self.spec.adopt_after and len(self._held) >= self.spec.adopt_after:
            for held in self._held:
                self._learn(held)
            self._held.clear()

    def _surprise(self, average: float) -> float | None:
        count = len(self._history)
        if count < self.spec.min_history:
            return None
        mean = self._sum / count
        spread = max(math.sqrt(max(self._sum_sq / count - mean * mean, 0.0)), self.spec.min_spread)
        gaussian = gaussian_surprise((average - mean) / spread)
        if self.spec.tail == "gaussian":
            return gaussian
        # rank: P(an average this high) = (1 + #{history >= it}) / (count + 1), exact for exchangeable averages
        # whatever their distribution (a daily spike in a week of history is not rare); beyond the history's
        # top, the Gaussian says how much further
        above = count - bisect.bisect_left(self._sorted, average)
        rank = -math.log10((1 + above) / (count + 1))
        if above == 0:
            rank += max(0.0, gaussian - gaussian_surprise((self._sorted[-1] - mean) / spread))
        return min(rank, MAX_SURPRISE)

    def _learn(self, average: float) -> None:
        if len(self._history) == self._history.maxlen:
            old = self._history[0]
            self._sum -= old
            self._sum_sq -= old * old
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._history.append(average)
        bisect.insort(self._sorted, average)
        self._sum += average
        self._sum_sq += average * average
        self._learned += 1
        if self._learned % 1024 == 0:  # rounding of the running sums: recompute now and then
            self._sum = math.fsum(self._history)
            self._sum_sq = math.fsum(v * v for v in self._history)
