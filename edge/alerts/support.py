"""What a calibration can promise: the lowest false-alarm rate its span supports, and a threshold placed far
beyond every normal score (numpy + stdlib only; the trainer and the device's burn-in say the same).

Why: a 0.1-per-day rule placed on 4.7 hours of normal readings is the tail fit's guess ten times
beyond the data; on real streams it fired 6-11 times its plan, or put the threshold at 3.7 times
anything seen and never alerted (issue 27). Neither may pass silently: the span needed is said plainly
with the rate the data can support and what to do, and both land in the manifest beside the plan.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from edge.alerts.calibration import SECONDS_PER_DAY, AlertPlan

log = logging.getLogger(__name__)

#: a threshold more than this many times the largest normal statistic seen: the detector may never alert
DEAF_RATIO = 3.0


@dataclass(frozen=True)
class Support:
    """The calibration's span, the lowest rate it supports and the warnings; `to_json` is the manifest's
    `postprocess.alerts.support`."""

    readings: int
    days: float | None
    supported_per_day: float | None  # one false alert per calibration span: the rate ranks can check
    threshold_ratio: float | None  # threshold / the largest normal statistic (None: that was <= 0)
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"calibration_readings": self.readings, "calibration_days": self.days,
                "supported_false_alarms_per_day": self.supported_per_day,
                "threshold_over_max_seen": self.threshold_ratio, "warnings": list(self.warnings)}


def supported_rate(days: float | None) -> float | None:
    """The lowest rate per day a normal span of `days` can check: one event per span (none seen in two days
    says little about a promise of one in ten). None for an empty span."""
    return 1.0 / days if days else None


def too_short(days: float | None, asked: float | None) -> bool:
    """Whether a normal span of `days` is too short to check `asked` events per day (the trainer's calibration
    slice, the held-out rows its figures are measured on)."""
    supported = supported_rate(days)
    return asked is not None and supported is not None and asked < supported


#: what to do about a span too short for the rate, by who placed the plan (`{s}`: the rate the span supports)
REMEDIES = {
    "trainer": "Give more normal data (--normal-rows), ask for {s}/day or more, or let the device learn the rule "
               "from the live stream (burn_in = true in the sensor's config)",
    "burn_in": "Give the burn-in more readings (burn_in_readings) or ask for {s}/day or more "
               "(false_alarms_per_day); the re-calibrations re-plan on up to ten burn-ins' worth of quiet readings "
               "as they come",
    "calibrated": "Calibrate on more readings (cmd/calibrate's readings or seconds) or ask for {s}/day or more",
}


def support(plan: AlertPlan, asked: float | None = None, threshold: float | None = None,
            placed_by: str = "trainer") -> Support:
    """The warnings a plan deserves: a span too short for its rate, a threshold far above every normal score.
    `asked`/`threshold`: the rate and threshold in force when the plan was re-planned (default: its own);
    `placed_by`: the threshold's source, for the remedy (a device burning in is not told to burn in)."""
    readings = plan.calibration.count
    days = readings * plan.period_s / SECONDS_PER_DAY if plan.period_s else None
    supported = supported_rate(days)
    warnings = []
    asked = plan.false_alarms_per_day if asked is None else asked
    # a rate of 0, below 0 or not finite (a damaged plan) has no span to check: no division by it
    asked = asked if isinstance(asked, (int, float)) and math.isfinite(asked) and asked > 0 else None
    threshold = plan.threshold if threshold is None else threshold
    if too_short(days, asked):
        warnings.append(
            f"calibration too short: {readings} normal readings ({days:.2g} days) can check a rate down to "
            f"about {supported:.2g} false alerts/day, not the {asked:g}/day asked (that needs {1 / asked:g} days "
            "of normal readings); below that the threshold is the tail fit's extrapolation. "
            + REMEDIES.get(placed_by, REMEDIES["trainer"]).format(s=f"{supported:.2g}"))
    top = max(plan.calibration.values)
    ratio = threshold / top if top > 0 else None
    if ratio is not None and ratio > DEAF_RATIO and plan.method != "floor":
        warnings.append(
            f"threshold {threshold:.4g} is {ratio:.3g}x the largest normal score seen ({top:.4g}): the tail "
            "fit put it far beyond the data and the detector may never alert. Give more normal data or ask "
            "for a looser rate")
    return Support(readings, days, supported, ratio, tuple(warnings))


class SaidOnce:
    """A sensor's plan warnings, each logged once: the evidence is rebuilt at every change of the rule (the
    burn-in's end and the re-plan after it logged the same sentence twice, 10 ms apart)."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def say(self, who: str, warnings: tuple[str, ...]) -> None:
        for warning in warnings:
            if warning not in self.said:
                log.warning("%s: %s", who, warning)
        self.said = set(warnings)
