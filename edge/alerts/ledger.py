"""Observed vs expected false alerts: episodes counted on a stream believed normal, and when "more than
expected" is beyond chance (numpy + stdlib only).

An alert episode starts when the rule goes from quiet to active. On a stream the user believes normal
every episode is a false alert; the calibration (`edge.alerts.calibration`) says how many to expect, and
the Poisson tail here says when the count observed is more than chance explains: the signal to
recalibrate. The trainer counts episodes on held-out data with the same function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.alerts.calibration import SECONDS_PER_DAY


def episodes(active: Sequence[bool] | np.ndarray) -> int:
    """Alert episodes: the number of times the rule goes from quiet to active."""
    a = np.asarray(active, bool)
    return int(a[0]) + int(np.sum(a[1:] & ~a[:-1])) if len(a) else 0



def poisson_tail(observed: int, expected: float) -> float:
    """P(X >= observed) for X ~ Poisson(expected): small means more alerts than chance explains."""
    if observed <= 0:
        return 1.0
    if expected <= 0:
        return 0.0
    term, below = math.exp(-expected), 0.0
    for i in range(observed):
        below += term
        term *= expected / (i + 1)
    return max(0.0, 1.0 - below)


@dataclass
class AlertLedger:
    """Observed vs expected false alerts on a stream the user believes normal.

    `update` takes each reading's rule state and, when known, its time in seconds; time runs
    from the first to the last timestamp seen (or readings x period when there is no clock).
    """

    expected_active_rate: float
    period_s: float | None = None
    readings: int = 0
    episodes: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    _active: bool = field(default=False, repr=False)

    def update(self, active: bool, ts: float | None = None) -> None:
        self.readings += 1
        if active and not self._active:
            self.episodes += 1
        self._active = active
        if ts is not None and math.isfinite(ts):
            self.first_ts = ts if self.first_ts is None else self.first_ts
            self.last_ts = ts

    @property
    def days(self) -> float | None:
        if self.first_ts is not None and self.last_ts is not None and self.last_ts > self.first_ts:
            return (self.last_ts - self.first_ts) / SECONDS_PER_DAY
        return self.readings * self.period_s / SECONDS_PER_DAY if self.period_s else None

    def summary(self) -> dict[str, Any]:
        expected = self.expected_active_rate * self.readings  # episodes expected at most
        days = self.days
        return {"readings": self.readings, "episodes": self.episodes, "days": days,
                "expected_episodes": expected,
                "observed_per_day": self.episodes / days if days else None,
                "expected_per_day": expected / days if days else None,
                "observed_per_1000": 1000 * self.episodes / self.readings if self.readings else None,
                "expected_per_1000": 1000 * self.expected_active_rate,
                "excess_p_value": poisson_tail(self.episodes, expected)}
