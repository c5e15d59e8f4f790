"""Which alert rule a sensor runs, where it came from, and how many false alerts it should give.

The manifest's `postprocess.alerts` (an `edge.alerts.calibration.AlertPlan` written by the trainer) gives
a threshold and a k-of-n debounce calibrated for a stated false-alarm rate; without it the plain
`postprocess.threshold` and the config's debounce apply, as before. In force, highest first:

1. `cmd/threshold` (a threshold only; persisted by the sensor kind's `ThresholdFile`);
2. `cmd/calibrate` (a plan re-fitted on readings the user declared normal; persisted by `PlanFile`);
3. the config's `threshold`;
4. the manifest's plan, re-planned for the config's `false_alarms_per_day` when it is set (the
   calibration table travels in the manifest, so a new target needs no retraining);
5. the manifest's `threshold`;
6. the device's burn-in (`edge.alerts.burnin`): with `burn_in = true` (unless the manifest has an episode
   plan: its own burn-in, `edge.alerts.episodic`), or when none of the above gives a rule, the first
   readings of the live stream plan it (source `burn_in`; nothing alerts until then), and quiet readings
   re-plan it slowly. Its plan is persisted like a calibration's.

The config's `debounce_k`/`debounce_n`, when set, override a plan's: the plan's threshold is kept
but its expected rate no longer holds (it was calibrated for another statistic), so none is claimed.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import Any

from edge.alerts import shapes
from edge.alerts.calibration import SECONDS_PER_DAY, AlertPlan
from edge.alerts.ledger import AlertLedger
from edge.alerts.rule import check_threshold

log = logging.getLogger(__name__)
MAX_DEBOUNCE = 1000
FLOAT32_MAX = 3.4028234663852886e38  # `cmd/threshold`'s bound (edge.numbers'; edge/alerts imports no other room)
JUDGE_DAYS = 2.0  # a plan is called contradicted only on at least this many days of readings


@dataclass(frozen=True)
class AlertSettings:
    """The rule in force: threshold, debounce, and (when calibrated) the expected false-alert rate."""

    threshold: float
    k: int
    n: int
    source: str  # "command", "calibrated", "config", "manifest", "replanned" (its table, the config's rate), "burn_in"
    expected_active_rate: float | None = None  # share of normal readings with the rule active
    period_s: float | None = None
    false_alarms_per_day: float | None = None

    @property
    def expected_per_day(self) -> float | None:
        if self.expected_active_rate is None or not self.period_s:
            return None
        return self.expected_active_rate * SECONDS_PER_DAY / self.period_s


#: what `AlertPlan.from_json` reads (a plan carries more fields, for people: not looked at)
TAIL_SHAPE = {"start": "number", "scale": "number", "shape": "number", "count": "integer"}
PLAN_SHAPE = {
    "false_alarms_per_day?": shapes.nullable("number"), "period_s?": shapes.nullable("number"),
    "debounce_k": "integer", "debounce_n": "integer", "threshold": "number", "method": "string", "alpha": "number",
    "expected_active_rate": "number",
    "calibration": {"values": ["number"], "exceed": ["integer"], "count": "integer", "exact_from?": "integer",
                    "tail?": shapes.nullable(TAIL_SHAPE)},
}


def check_plan(data: Any, where: str) -> AlertPlan:
    """An alert plan from JSON, every field checked: ValueError naming `where` and the field otherwise (a wrong
    JSON type: `shapes.ShapeError`, e.g. "<where>.calibration.values: expected a list of numbers, got a string")."""
    shapes.check(data, PLAN_SHAPE, where)
    try:
        plan = AlertPlan.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not a valid alert plan ({type(exc).__name__}: {exc})") from None
    try:
        check_threshold(plan.threshold, f"{where}.threshold")
    except ValueError as exc:  # a trainer before issue 27 wrote 0.0 for a stream it reconstructs exactly
        if not where.startswith("manifest"):  # a saved rule: the state file's caller says what follows
            raise
        raise ValueError(f"{exc}: retrain the model with the current trainer (it floors the threshold at the "
                         "score's resolution), or set the sensor's `threshold` in the config, or "
                         "`burn_in = true` to learn the rule from the live stream") from None
    within_float32(plan.threshold, f"{where}.threshold")
    if not 1 <= plan.k <= plan.n <= MAX_DEBOUNCE:
        raise ValueError(f"{where}: debounce needs 1 <= k <= n <= {MAX_DEBOUNCE}, got k={plan.k}, n={plan.n}")
    _check_rates(plan, where)
    _check_calibration(plan.calibration, where)
    return plan


def within_float32(threshold: float, where: str) -> float:
    """A saved threshold bounded as `cmd/threshold` bounds it (the models compute in float32): a larger one made
    stats' ratios overflow to infinity."""
    if threshold > FLOAT32_MAX:
        raise ValueError(f"{where}: expected a number <= {FLOAT32_MAX:g} (the float32 range the models compute in), "
                         f"got {threshold!r}")
    return threshold


#: where a plan's threshold came from (`Calibration.threshold`, `plan_alerts`; a re-calibration's clipped step:
#: `edge.alerts.burnin.Recalibrator.replan`)
METHODS = ("conformal", "tail", "max", "floor", "bounded")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


#: a reading period a plan may carry, in seconds: a microsecond to thirty years
PERIOD_RANGE = (1e-6, 1e9)


def _check_rates(plan: AlertPlan, where: str) -> None:
    """The plan's rates in their ranges: ValueError naming the field and what it should be."""
    if not (math.isfinite(plan.expected_active_rate) and 0 <= plan.expected_active_rate <= 1):
        raise ValueError(f"{where}.expected_active_rate: expected a share in [0, 1], got {plan.expected_active_rate}")
    if plan.period_s is not None and not (_positive(plan.period_s) and PERIOD_RANGE[0] <= plan.period_s
                                          <= PERIOD_RANGE[1]):  # 1e-300 made "1.8e-302 days" of calibration
        raise ValueError(f"{where}.period_s: expected seconds from {PERIOD_RANGE[0]:g} to {PERIOD_RANGE[1]:g} or "
                         f"null, got {plan.period_s!r}")
    if plan.false_alarms_per_day is not None and not _positive(plan.false_alarms_per_day):
        raise ValueError(f"{where}.false_alarms_per_day: expected a finite number > 0 or null, got "
                         f"{plan.false_alarms_per_day!r}")
    if not 0 < plan.alpha < 1:
        raise ValueError(f"{where}.alpha: expected a share in (0, 1), got {plan.alpha!r}")
    if plan.method not in METHODS:
        raise ValueError(f"{where}.method: expected one of {', '.join(METHODS)}, got {plan.method!r}")


def _check_calibration(calibration: Any, where: str) -> None:
    """The calibration table: ascending finite values, each with a count of scores at or above it in [1, count]
    (never rising), and its tail fit's own ranges (`fit_tail`: shape in [0, 0.5], scale > 0)."""
    values, exceed, count = calibration.values, calibration.exceed, calibration.count
    where = f"{where}.calibration"
    if not values or not all(math.isfinite(v) for v in values) or list(values) != sorted(values):
        raise ValueError(f"{where}: expected ascending finite values")
    if count < len(values):
        raise ValueError(f"{where}.count: expected at least the {len(values)} values of the table, got {count}")
    if len(exceed) != len(values) or not all(1 <= e <= count for e in exceed) or list(exceed) != sorted(
            exceed, reverse=True):
        raise ValueError(f"{where}.exceed: expected one count per value, each in [1, count = {count}], never "
                         f"rising, got {list(exceed)[:5]}{'...' if len(exceed) > 5 else ''}")
    if not 0 <= calibration.exact_from <= len(values):
        raise ValueError(f"{where}.exact_from: expected an index in [0, {len(values)}], got {calibration.exact_from}")
    tail = calibration.tail
    if tail is not None and not (math.isfinite(tail.start) and _positive(tail.scale) and 0 <= tail.shape <= 0.5
                                 and 1 <= tail.count <= count):
        raise ValueError(f"{where}.tail: expected a finite start, a finite scale > 0, a shape in [0, 0.5] and a "
                         f"count in [1, {count}], got start {tail.start!r}, scale {tail.scale!r}, shape "
                         f"{tail.shape!r}, count {tail.count!r}")


def manifest_plan(postprocess: dict[str, Any], model: str) -> AlertPlan | None:
    """The manifest's plan, or None when the entry has none (older manifests: threshold + config debounce)."""
    if postprocess.get("alerts") is None:
        return None
    return check_plan(postprocess["alerts"], f"manifest: model {model!r} postprocess.alerts")


def replan(plan: AlertPlan, false_alarms_per_day: float, model: str) -> AlertSettings:
    """The manifest's calibration at a new target rate (same statistic, same debounce)."""
    if not plan.period_s:
        raise ValueError(f"false_alarms_per_day: model {model!r} was calibrated without a clock (no reading "
                         "period in postprocess.alerts); retrain on timestamped data or use cmd/calibrate")
    at = plan.at_rate(false_alarms_per_day)
    threshold = check_threshold(at.threshold, f"model {model!r}: threshold re-planned for {false_alarms_per_day}/day")
    return AlertSettings(threshold, plan.k, plan.n, "replanned", at.expected_active_rate, plan.period_s,
                         false_alarms_per_day)


def from_plan(plan: AlertPlan, source: str) -> AlertSettings:
    return AlertSettings(plan.threshold, plan.k, plan.n, source, plan.expected_active_rate, plan.period_s,
                         plan.false_alarms_per_day)


#: the threshold while the burn-in learns: no score exceeds it (the pipeline does not run the rule meanwhile)
LEARNING = sys.float_info.max


def learning(cfg: Any) -> AlertSettings:
    """The rule while the burn-in collects: no threshold yet, nothing alerts."""
    return AlertSettings(LEARNING, 1, 1, "burn_in", None, None, cfg.false_alarms_per_day)


def burns_in(cfg: Any, postprocess: dict[str, Any]) -> bool:
    """`burn_in = true`, or (unset) a manifest that gives no rule at all and no threshold in the config."""
    asked = getattr(cfg, "burn_in", None)
    if asked and isinstance(postprocess.get("alerts"), dict) and postprocess["alerts"].get("episode") is not None:
        return False  # the episode rule's own burn-in places its level (edge.alerts.episodic)
    if asked is not None or cfg.threshold is not None:
        return bool(asked)
    # no rule at all: no plan and a null threshold; a threshold that is not a number > 0 is refused in words
    # (`resolve`), not taken as "none" (-1 or "0.001" in a manifest burned in silently)
    return postprocess.get("alerts") is None and postprocess.get("threshold") is None


def resolve(cfg: Any, postprocess: dict[str, Any], model: str, commanded: float | None,
            calibrated: AlertPlan | None, calibrated_source: str = "calibrated") -> AlertSettings:
    """The rule in force for a sensor (see the module docstring for the order); a plan from `cmd/calibrate`
    or the burn-in is `calibrated`, `calibrated_source` says which."""
    if burns_in(cfg, postprocess):
        base = learning(cfg) if calibrated is None else from_plan(calibrated, calibrated_source)
        return base if commanded is None else AlertSettings(commanded, base.k, base.n, "command", None, base.period_s)
    plan = manifest_plan(postprocess, model)
    if plan is None and cfg.false_alarms_per_day is not None:
        raise ValueError(f"false_alarms_per_day: model {model!r} has no alert plan (postprocess.alerts) to re-plan "
                         "from; retrain it, or drop the key and send cmd/calibrate with a false_alarms_per_day")
    if calibrated is not None:
        base = from_plan(calibrated, calibrated_source)
    elif plan is not None and cfg.false_alarms_per_day is not None:
        base = replan(plan, cfg.false_alarms_per_day, model)
    elif plan is not None:
        base = from_plan(plan, "manifest")
    else:  # the config's threshold, when set, replaces the manifest's (which may be null: no rule at all)
        threshold = postprocess.get("threshold") if cfg.threshold is None else cfg.threshold
        try:
            where = f"manifest: model {model!r} postprocess.threshold"
            checked = within_float32(check_threshold(threshold, where), where)
        except ValueError as exc:
            learn = "drop `burn_in = false`" if cfg.burn_in is False else "set `burn_in = true`"
            raise ValueError(f"{exc}: the model gives no rule; set the sensor's `threshold`, or {learn} to learn "
                             "one from the live stream") from None
        base = AlertSettings(checked, 1, 1, "manifest")
    if commanded is not None:
        base = AlertSettings(commanded, base.k, base.n, "command", None, base.period_s)
    elif cfg.threshold is not None and calibrated is None:
        base = AlertSettings(cfg.threshold, base.k, base.n, "config", None, base.period_s)
    if cfg.debounce is not None and cfg.debounce != (base.k, base.n):
        k, n = fill_debounce(cfg.debounce, base.k, base.n)
        if base.expected_active_rate is not None:
            log.warning("sensor %r: the config's debounce %d-of-%d replaces the calibrated %d-of-%d: no expected "
                        "false-alert rate can be stated", cfg.name, k, n, base.k, base.n)
        base = AlertSettings(base.threshold, k, n, base.source, None, base.period_s)
    return base


def fill_debounce(asked: tuple[int | None, int | None], k: int, n: int) -> tuple[int, int]:
    """The config's k and/or n, the missing one from the rule it replaces: n alone keeps the plan's k
    (at most n), k alone keeps the plan's n (at least k)."""
    want_k, want_n = asked
    if want_k is None:
        return min(k, want_n), want_n  # type: ignore[type-var]
    if want_n is None:
        return want_k, max(n, want_k)
    return want_k, want_n


def settings_fields(settings: AlertSettings) -> dict[str, Any]:
    """The rule in force as `cmd/calibrate/result` and `stats` carry it."""
    learning = settings.threshold == LEARNING  # the burn-in has no threshold yet, nor its debounce (not 1-of-1)
    return {"threshold": None if learning else settings.threshold, "threshold_source": settings.source,
            "debounce_k": None if learning else settings.k, "debounce_n": None if learning else settings.n,
            "false_alarms_per_day": settings.false_alarms_per_day,
            "expected_false_alerts_per_day": settings.expected_per_day, "period_s": settings.period_s}


def alert_summary(settings: AlertSettings, ledger: AlertLedger) -> dict[str, Any]:
    """`stats.quality[sensor/<name>]`: the rule, and alert episodes per day since it was set, observed
    vs expected. On a stream believed normal every episode is a false alert; `excess_p_value` < 0.01
    says there are more than chance explains (time to recalibrate), and `plan_contradicted` says it once
    `JUDGE_DAYS` of readings give more than twice the planned episodes per day at that confidence."""
    summary = ledger.summary()
    known = settings.expected_active_rate is not None
    p_value = summary["excess_p_value"] if known else None
    observed, planned = summary["observed_per_day"], settings.false_alarms_per_day or settings.expected_per_day
    contradicted = bool(p_value is not None and p_value < 0.01 and (summary["days"] or 0) >= JUDGE_DAYS
                        and observed is not None and planned and observed > 2 * planned)
    return {**settings_fields(settings), "readings": summary["readings"], "alert_episodes": summary["episodes"],
            "days": summary["days"], "observed_alerts_per_day": observed,
            "expected_alerts_per_1000": summary["expected_per_1000"] if known else None,
            "observed_alerts_per_1000": summary["observed_per_1000"],
            "excess_p_value": p_value, "plan_contradicted": contradicted}
