"""Held-out figures that are out of sample: a threshold is never measured on the scores that placed it.

Why: a threshold calibrated on the held-out normal slice and then measured on the same slice alerts on
about the share it was placed for by construction ("alert episodes per day, held-out normal: 0"), which
says nothing about the next day. Two-fold cross-fitting in time order keeps every held-out reading for
both jobs: the first half places a threshold that the second half measures, and the other way round.
The shipped plan is fitted on the whole slice (more data, a threshold at least as good); the figures
printed beside it are those of the half-slice plans, a slightly pessimistic estimate of it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.alerts.calibration import SECONDS_PER_DAY, AlertPlan, rule_statistic
from edge.alerts.ledger import episodes

METHOD = "2-fold cross-fit in time order (each half's plan measured on the other half)"


def halves(n: int) -> list[tuple[slice, slice]]:
    """(calibrate, measure) pairs of the two halves of n readings, in time order."""
    middle = n // 2
    first, second = slice(0, middle), slice(middle, n)
    return [(first, second), (second, first)]


def cross_fitted(scores: np.ndarray, plan_for: Callable[[np.ndarray], AlertPlan],
                 period_s: float | None) -> dict[str, float | str | None]:
    """Rule activity on held-out normal scores, each half judged by the plan the other half placed:
    the share of readings with the rule active, the alert episodes, and episodes per day (with a clock)."""
    scores = np.asarray(scores, np.float64)
    active_readings = measured = count = 0
    for calibrate, measure in halves(len(scores)):
        plan = plan_for(scores[calibrate])
        statistic = rule_statistic(scores[measure], plan.k, plan.n)
        active = statistic > plan.threshold
        active_readings += int(active.sum())
        measured += len(active)
        count += episodes(active)
    days = measured * period_s / SECONDS_PER_DAY if period_s else None
    return {"alert_share_test": active_readings / measured if measured else None,
            "false_alert_rate_test": active_readings / measured if measured else None,
            "alert_episodes_test": count, "alert_episodes_per_day_test": count / days if days else None,
            "heldout_method": METHOD}


def cross_fitted_share(scores: np.ndarray, percentile: float) -> float:
    """The lecture's independent draws: the share of held-out normal errors above the percentile that the
    other half of them placed."""
    scores = np.asarray(scores, np.float64)
    above = [np.mean(scores[measure] > np.percentile(scores[calibrate], percentile))
             for calibrate, measure in halves(len(scores))]
    return float(np.mean(above))
