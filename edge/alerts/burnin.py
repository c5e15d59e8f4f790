"""The rule learned on the device: a burn-in on the live stream's first readings, then slow, bounded
re-calibration on quiet readings only (numpy + stdlib only).

Why: the laptop's held-out slice is often hours long and from another season; the device sees the
stream itself. NAB gives every detector a probationary period (the first 15% of a file, at most 750
readings) in which it learns and is not scored; the burn-in is that: the first `readings` scores are
taken as normal and plan the k-of-n rule for the target rate (`edge.alerts.calibration.plan_alerts`),
and nothing alerts meanwhile. After it, the recent quiet scores re-plan the rule every `every`
readings, each step moving the threshold by at most `MAX_STEP` times, so drift is followed slowly and a
fault is never learned as normal: a score enters the pool only once `guard` further readings have
passed with the rule quiet, and the readings of an alert episode and those just before its onset
never do.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from edge.alerts.calibration import AlertPlan, plan_alerts

NAB_PROBATION = 750  # readings: NAB's probationary period is the first 15% of a file, at most 750
MIN_BURN_IN = 30  # fewer scores cannot rank a threshold (as cmd/calibrate)
MAX_STEP = 2.0  # one re-calibration moves the threshold by at most this factor either way
POOL_SPANS = 10  # the pool keeps this many re-calibration spans of quiet scores


def period_of(stamps: list[float | None]) -> float | None:
    """The median positive spacing of the readings' times (None: no clock)."""
    if not stamps or any(s is None for s in stamps):
        return None
    steps = np.diff(np.asarray(stamps, np.float64))
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else None


@dataclass
class BurnIn:
    """The first `readings` scores of the live stream, taken as normal."""

    readings: int
    false_alarms_per_day: float
    debounce: tuple[int, int] | None = None
    scores: list[float] = field(default_factory=list)
    stamps: list[float | None] = field(default_factory=list)

    def add(self, score: float, stamp: float | None) -> bool:
        """Take one score; True once enough are in."""
        self.scores.append(score)
        self.stamps.append(stamp)
        return len(self.scores) >= self.readings

    def progress(self) -> dict[str, int]:
        return {"readings": len(self.scores), "needed": self.readings}

    def plan(self, floor: float = 0.0) -> AlertPlan:
        """The plan on the scores taken; ValueError when they carry no clock or give no threshold."""
        period = period_of(self.stamps)
        if period is None:
            raise ValueError("burn-in: the readings carry no clock (a 'ts' that is a time): no rate per day can "
                             "be planned; give readings a timestamp, or set the sensor's threshold")
        return plan_alerts(self.scores, self.false_alarms_per_day, period, debounce=self.debounce, floor=floor)


@dataclass
class Recalibrator:
    """Quiet scores since the burn-in; every `every` readings a new plan, bounded by `MAX_STEP`."""

    every: int
    guard: int  # readings a score waits, the rule quiet, before it joins the pool
    pool: collections.deque = field(init=False)
    pending: collections.deque = field(init=False)
    stamps: collections.deque = field(init=False)
    since: int = 0
    done: int = 0  # re-calibrations applied
    held_back: int = 0  # scores kept out of the pool by an alert
    rests_on: int = 0  # readings the plan in force was placed on: a re-plan waits for as many (at most a full pool)

    def __post_init__(self) -> None:
        self.pool = collections.deque(maxlen=POOL_SPANS * self.every)
        self.stamps = collections.deque(maxlen=POOL_SPANS * self.every)
        self.pending = collections.deque()

    def add(self, score: float, stamp: float | None, active: bool) -> bool:
        """Take one scored reading and the rule's state; True when a re-calibration is due."""
        if active:  # the episode and the readings just before its onset are not normal
            self.held_back += len(self.pending) + 1
            self.pending.clear()
        else:
            self.pending.append((score, stamp))
            if len(self.pending) > self.guard:
                quiet, when = self.pending.popleft()
                self.pool.append(quiet)
                self.stamps.append(when)
        self.since += 1
        # after a restart the pool starts empty: a plan resting on 1,328 readings was replaced by one on 498
        needed = max(self.every, min(self.rests_on, self.pool.maxlen or self.every))
        return self.since >= self.every and len(self.pool) >= needed

    def replan(self, plan: AlertPlan, floor: float = 0.0) -> AlertPlan:
        """The pool's plan at the same target and debounce, its threshold within MAX_STEP of `plan`'s."""
        self.since = 0
        period = period_of(list(self.stamps)) or plan.period_s
        fresh = plan_alerts(list(self.pool), plan.false_alarms_per_day, period, alpha=None if period else plan.alpha,
                            debounce=(plan.k, plan.n), floor=floor)
        bounded = min(max(fresh.threshold, plan.threshold / MAX_STEP), plan.threshold * MAX_STEP)
        self.done += 1
        return AlertPlan(fresh.false_alarms_per_day, fresh.period_s, fresh.k, fresh.n, bounded,
                         fresh.method if bounded == fresh.threshold else "bounded", fresh.alpha,
                         fresh.calibration.rate(bounded), fresh.calibration)
