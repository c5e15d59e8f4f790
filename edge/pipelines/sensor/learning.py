"""A sensor's rule learned on the device (`edge.alerts.burnin`): the burn-in's progress, then the quiet
readings that re-plan the rule; the pipeline asks `observe` after each scored reading."""

from __future__ import annotations

import logging
from typing import Any

from edge.alerts.burnin import NAB_PROBATION, BurnIn, Recalibrator
from edge.alerts.calibration import AlertPlan, score_resolution
from edge.alerts.plan import burns_in, fill_debounce
from edge.alerts.recalibrate import DEFAULT_FALSE_ALARMS_PER_DAY
from edge.pipelines.sensor.rulefiles import PlanFile

log = logging.getLogger(__name__)


class DeviceLearning:
    """Burn-in then re-calibration for one sensor; `plan` is the rule they gave (None: still burning in)."""

    def __init__(self, name: str, readings: int, false_alarms_per_day: float | None,
                 debounce: tuple[int, int] | None, input_step: float, plan: AlertPlan | None) -> None:
        self.name, self.floor = name, score_resolution(input_step)
        rate = false_alarms_per_day or DEFAULT_FALSE_ALARMS_PER_DAY
        self.burn_in = None if plan is not None else BurnIn(readings, rate, debounce)
        self.plan = plan
        self.recalibrator = Recalibrator(every=readings, guard=max(3 * (plan.n if plan else 5), 12),
                                         rests_on=rested_on(plan) if plan else 0)  # a plan saved before
        self.failed: str | None = None

    @property
    def learning(self) -> bool:
        return self.plan is None

    def observe(self, score: float, stamp: float | None, active: bool) -> AlertPlan | None:
        """One scored reading (and the rule's state after it); a new plan when the burn-in ends or a
        re-calibration is due, else None."""
        if self.burn_in is not None:
            if not self.burn_in.add(score, stamp):
                return None
            burn_in, self.burn_in = self.burn_in, None
            try:
                self.plan = burn_in.plan(self.floor)
            except ValueError as exc:  # e.g. no clock: said in stats and the log, the burn-in starts over
                if self.failed != str(exc):  # once, not at every failed burn-in (10 times in 1,000 readings)
                    log.warning("sensor %s: %s (the burn-in starts over; said once)", self.name, exc)
                self.failed = str(exc)
                self.burn_in = BurnIn(burn_in.readings, burn_in.false_alarms_per_day, burn_in.debounce)
                return None
            log.info("sensor %s: burn-in done on %d readings: threshold %.4g (%s), %d-of-%d", self.name,
                     burn_in.readings, self.plan.threshold, self.plan.method, self.plan.k, self.plan.n)
            return self.plan
        assert self.plan is not None
        if self.recalibrator.add(score, stamp, active):
            self.plan = self.recalibrator.replan(self.plan, self.floor)
            return self.plan
        return None

    def unlearnable(self) -> str | None:
        """Why no rule can be learned, while none is (the sensor is deaf: `stats.healthy` false); else None."""
        return f"its burn-in cannot learn a rule: {self.failed}" if self.failed and self.plan is None else None

    def progress(self) -> dict[str, int] | None:
        """`stats.quality[sensor/<name>].burn_in` (as the episode rule's): scored readings taken of those
        needed; None once the rule is learned."""
        return self.burn_in.progress() if self.burn_in is not None else None

    def status(self) -> dict[str, Any]:
        """`stats.quality[sensor/<name>].device_learning`: the re-calibrations after the burn-in."""
        return {"recalibrations": self.recalibrator.done, "pool_readings": len(self.recalibrator.pool),
                "held_back": self.recalibrator.held_back, "error": self.failed}


def rested_on(plan: AlertPlan) -> int:
    """The readings a k-of-n plan was placed on: its calibration counts one statistic per n consecutive scores."""
    return plan.calibration.count + plan.n - 1


def burn_in_length(cfg: Any) -> int:
    """The readings a k-of-n burn-in takes: the config's `burn_in_readings`, else NAB's probationary length."""
    return cfg.burn_in_readings or NAB_PROBATION


def saved_rule(plans: PlanFile, entry: Any, cfg: Any) -> tuple[AlertPlan | None, str]:
    """The k-of-n plan kept in `<sensor>.alerts.json` for this model file, and who made it ("calibrated",
    "burn_in"). A burn-in's plan is used only while the sensor burns in (`burn_in = false` or a fixed threshold:
    the plan as shipped or configured; the file stays for when it burns in again), and follows the config as it
    is now: learned over another `burn_in_readings` or another debounce, it is not used (the sensor burns in
    again); learned for another `false_alarms_per_day`, it is re-planned for the config's rate from its own
    calibration table. Each was silently kept after a restart."""
    plan = plans.load(entry.sha256)
    if plan is None or plans.source != "burn_in":
        return plan, plans.source
    if not burns_in(cfg, entry.postprocess):
        log.info("sensor %s: the rule a burn-in learned (%s) is not used: the sensor does not burn in now",
                 cfg.name, plans.path)
        return None, "calibrated"
    if plans.burn_in_readings not in (None, burn_in_length(cfg)):
        log.warning("ignoring %s: the rule was burned in on %d readings and the burn-in now takes %d "
                    "(burn_in_readings); it burns in again", plans.path, plans.burn_in_readings, burn_in_length(cfg))
        return None, "calibrated"
    asked = None if cfg.debounce is None else fill_debounce(cfg.debounce, plan.k, plan.n)
    if asked is not None and asked != (plan.k, plan.n):
        log.warning("sensor %s: the rule was burned in for %d-of-%d and the config now asks debounce %d-of-%d; it "
                    "burns in again", cfg.name, plan.k, plan.n, *asked)
        return None, "calibrated"
    rate = cfg.false_alarms_per_day or DEFAULT_FALSE_ALARMS_PER_DAY
    if plan.false_alarms_per_day != rate and plan.period_s:
        log.info("sensor %s: the rule burned in for %g false alarms/day is re-planned for %g/day (%s)", cfg.name,
                 plan.false_alarms_per_day, rate,
                 "the config's" if cfg.false_alarms_per_day else "the default: the config sets none")
        plan = plan.at_rate(rate, score_resolution(entry.inputs[0].scale))
    return plan, "burn_in"
