"""`cmd/calibrate`: the next N readings (or S seconds) are declared normal; their scores re-plan the alerts.

A model trained on another season, another machine or another mounting scores a healthy
stream differently; the user who knows the stream is healthy now can say so, and the device
re-fits the k-of-n rule for a stated false-alarm rate on its own scores (`edge.alerts.calibration`),
without retraining. The request is checked in full before anything starts (a negative, non-finite
or missing span is refused); the plan is fitted once the span is complete.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.alerts.calibration import MAX_FALSE_ALARMS_PER_DAY, AlertPlan, plan_alerts

MIN_READINGS = 30  # fewer scores cannot rank a threshold for any useful rate
MAX_READINGS = 100_000  # three Python lists of them are ~10 MB on a Pi; a seconds span ends here too
MAX_SECONDS = 30 * 86400.0
DEFAULT_FALSE_ALARMS_PER_DAY = 0.1  # the trainer's default (`--false-alarms-per-day`)
KEYS = {"sensor", "id", "readings", "seconds", "false_alarms_per_day"}


def _positive(body: dict[str, Any], key: str, upper: float, integer: bool = False) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"calibrate: {key!r} must be a {'whole number' if integer else 'number'}, got {value!r}")
    if not math.isfinite(value) or not 0 < value <= upper:
        raise ValueError(f"calibrate: {key!r} must be a finite number > 0 and at most {upper:g}, got {value!r}")
    return value


@dataclass
class Collection:
    """Scores of the readings declared normal, in arrival order, with their times."""

    request_id: Any
    readings: int | None
    seconds: float | None
    false_alarms_per_day: float
    debounce: tuple[int, int] | None
    started: float = field(default_factory=time.monotonic)
    scores: list[float] = field(default_factory=list)
    stamps: list[float | None] = field(default_factory=list)  # the readings' own times (None: none given)
    arrivals: list[float] = field(default_factory=list)

    @classmethod
    def parse(cls, body: dict[str, Any], request_id: Any, default_rate: float | None,
              debounce: tuple[int, int] | None) -> Collection:
        unknown = sorted(set(body) - KEYS)
        if unknown:
            raise ValueError(f"calibrate: unknown keys {unknown} (accepted: {sorted(KEYS)})")
        readings = _positive(body, "readings", MAX_READINGS, integer=True)
        seconds = _positive(body, "seconds", MAX_SECONDS)
        if (readings is None) == (seconds is None):
            raise ValueError("calibrate: give either 'readings' (a count) or 'seconds' (a span), not both or neither")
        if readings is not None and readings < MIN_READINGS:
            raise ValueError(f"calibrate: 'readings' must be at least {MIN_READINGS}, got {readings}")
        rate = _positive(body, "false_alarms_per_day", MAX_FALSE_ALARMS_PER_DAY)
        rate = rate if rate is not None else default_rate or DEFAULT_FALSE_ALARMS_PER_DAY
        return cls(request_id, None if readings is None else int(readings), seconds, float(rate), debounce)

    def describe(self) -> dict[str, Any]:
        """The first answer: what is being collected."""
        return {"state": "collecting", "readings": self.readings, "seconds": self.seconds,
                "false_alarms_per_day": self.false_alarms_per_day}

    def add(self, score: float, stamp: float | None) -> bool:
        """Take one scored reading; True once the span is complete (a reading past `seconds` is not taken)."""
        now = time.monotonic()
        if self.seconds is not None and now - self.started >= self.seconds:
            return True
        self.scores.append(score)
        self.stamps.append(stamp)
        self.arrivals.append(now)
        return len(self.scores) >= (self.readings or MAX_READINGS)

    def period_s(self) -> float | None:
        """The median spacing of the readings: their own times when all carry one, else their arrival."""
        stamps = self.stamps if all(s is not None for s in self.stamps) else self.arrivals
        steps = np.diff(np.asarray(stamps, np.float64))
        steps = steps[steps > 0]
        return float(np.median(steps)) if len(steps) else None

    def plan(self) -> AlertPlan:
        """The plan fitted on the collected scores; ValueError when they cannot give one."""
        if len(self.scores) < MIN_READINGS:
            raise ValueError(f"calibrate: only {len(self.scores)} scored readings in {self.seconds:g} s; "
                             f"at least {MIN_READINGS} are needed")
        period = self.period_s()
        if period is None:
            raise ValueError("calibrate: the readings carry no usable clock (all at the same time)")
        return plan_alerts(self.scores, self.false_alarms_per_day, period, debounce=self.debounce)
