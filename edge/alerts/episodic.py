"""The episode rule as a sensor runs it: which plan is in force, the rule object, and what `stats` says of it.

Why a module of its own: the agent's sensor pipeline and `training nab`'s replay must run the same object
with the same call, so what NAB scores is what pages a user. `episode_alerts` builds it from the manifest's
`postprocess.alerts.episode` (`edge.alerts.episode.EpisodePlan`) and the config; `EpisodeRun.update(score)` is
the one call per reading; `EpisodeRun.summary()` is `stats.quality`'s account of it (planned vs observed
episodes per day, and where `on` came from). An old manifest (no `episode`) gives None: the k-of-n rule.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from edge.alerts import shapes
from edge.alerts.burnin import NAB_PROBATION
from edge.alerts.calibration import SECONDS_PER_DAY
from edge.alerts.episode import PLAN_SHAPE, EpisodeAlerts, EpisodePlan
from edge.alerts.ledger import poisson_tail
from edge.alerts.likelihood import MAX_SURPRISE
from edge.alerts.plan import JUDGE_DAYS


def manifest_episode(postprocess: dict[str, Any], model: str) -> tuple[EpisodePlan, float] | None:
    """The manifest's episode plan and its reading period, every field checked (ValueError naming the
    field); None for a manifest without one (written before the episode rule: the k-of-n rule runs)."""
    alerts = postprocess.get("alerts")
    if not isinstance(alerts, dict) or alerts.get("episode") is None:
        return None
    where = f"manifest: model {model!r} postprocess.alerts.episode"
    data, period = alerts["episode"], alerts.get("period_s")
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not (math.isfinite(period) and period > 0):
        raise ValueError(f"{where}: needs postprocess.alerts.period_s, a finite number > 0, got {period!r}")
    shapes.check(data, PLAN_SHAPE, where)  # a wrong type named by its field (ShapeError, a ValueError)
    try:
        return EpisodePlan.from_json(data), float(period)
    except ValueError as exc:  # a value out of range: the spec's own words
        raise ValueError(f"{where}: not a valid episode plan: {exc}") from None


def for_target(plan: EpisodePlan, period_s: float, per_day: float) -> EpisodePlan:
    """The plan re-planned for another rate of false episodes per day (the config's `false_alarms_per_day`):
    `on` at the conformal bound for it (the burn-in, when there is one, re-places it on the stream)."""
    on = math.log10(SECONDS_PER_DAY / period_s / per_day)
    episode = dataclasses.replace(plan.episode, false_episodes_per_day=per_day).with_on(min(on, MAX_SURPRISE))
    return dataclasses.replace(plan, episode=episode)


@dataclass
class EpisodeRun:
    """One sensor's episode rule (`EpisodeAlerts`) and its count of episodes, readings and time since it
    started. `source`: where the plan came from ("manifest", "replanned": the config's rate)."""

    alerts: EpisodeAlerts
    source: str
    readings: int = 0
    episodes: int = 0
    surprise: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None

    def update(self, score: float | None, ts: float | None = None) -> tuple[bool, bool]:
        """One reading's score (None while the model's window fills): (active, onset)."""
        active, onset, self.surprise = self.alerts.update(score)
        self.episodes += onset
        if score is None:  # the model's window fills: not a reading the rule judged (as the k-of-n ledger)
            return active, onset
        self.readings += 1
        if ts is not None and math.isfinite(ts):
            self.first_ts = ts if self.first_ts is None else self.first_ts
            self.last_ts = ts
        return active, onset

    @property
    def learning(self) -> int:
        """Readings of the burn-in still to come (0: `on` is placed)."""
        return self.alerts.burn_in_left

    def progress(self) -> dict[str, int] | None:
        """`stats.quality`'s `burn_in` (as the k-of-n burn-in's): readings taken of those needed; None once done.
        The episode rule's burn-in counts every reading from the first (the model's window filling included); one
        shorter than the likelihood's warm-up needs more than `burn_in_readings` (`EpisodeAlerts.burn_in_left`)."""
        left, taken = self.learning, self.alerts.burn_in_taken
        return {"readings": taken, "needed": taken + left} if left else None

    def basis(self) -> dict[str, Any]:
        """What a burned-in `on` was placed for: the plan (after the config's re-plan), the reading period and
        the burn-in's length. A saved `on` is used again only for the same basis (and model file)."""
        return {"plan": self.alerts.plan.to_json(), "period_s": self.alerts.period_s, "readings": self.alerts.burn_in}

    @property
    def days(self) -> float:
        if self.first_ts is not None and self.last_ts is not None and self.last_ts > self.first_ts:
            return (self.last_ts - self.first_ts) / SECONDS_PER_DAY
        return self.readings * self.alerts.period_s / SECONDS_PER_DAY

    def state(self) -> dict[str, Any]:
        """The rule as an alert carries it (`schemas/anomaly.json`'s episode form of `rule`)."""
        spec = self.alerts.rule.spec
        return {"surprise": self.surprise, "on": spec.on, "off": spec.off, "release": spec.release,
                "cooldown": spec.cooldown, "on_source": self.on_source, "threshold_source": self.source}

    @property
    def on_source(self) -> str:
        """"plan" (the manifest's conformal bound), "burn_in" (learning), or the burn-in's placement."""
        if self.alerts.on_plan is not None:
            return self.alerts.on_plan.source
        return "burn_in" if self.learning else "plan"

    def summary(self) -> dict[str, Any]:
        """`stats.quality[sensor/<name>]` for the episode rule: planned vs observed false episodes per day on a
        stream believed normal, and `plan_contradicted` once `JUDGE_DAYS` show more than twice the plan beyond
        chance (Poisson, p < 0.01)."""
        spec, days = self.alerts.rule.spec, self.days
        planned = spec.false_episodes_per_day
        observed = self.episodes / days if days else None
        p_value = poisson_tail(self.episodes, planned * days)
        contradicted = bool(days >= JUDGE_DAYS and p_value < 0.01 and observed is not None and observed > 2 * planned)
        return {"rule": "episode", "threshold": None, "threshold_source": self.source, "debounce_k": None,
                "debounce_n": None, "false_alarms_per_day": planned, "expected_false_alerts_per_day": planned,
                "period_s": self.alerts.period_s, "readings": self.readings, "alert_episodes": self.episodes,
                "days": days, "observed_alerts_per_day": observed, "expected_alerts_per_1000": None,
                "observed_alerts_per_1000": 1000 * self.episodes / self.readings if self.readings else None,
                "excess_p_value": p_value, "plan_contradicted": contradicted,
                "burn_in": self.progress(), "episode": {**self.state(), "active": self.alerts.rule.active}}


def episode_alerts(postprocess: dict[str, Any], model: str, burn_in: bool | None = None,
                   burn_in_readings: int | None = None, false_alarms_per_day: float | None = None) -> EpisodeRun | None:
    """The episode rule a sensor runs on this manifest entry, or None (no episode plan: the k-of-n rule).
    The config's switch and count, as for the k-of-n burn-in: `burn_in` False: the plan's `on` throughout; True:
    a burn-in places it; None: one when the plan has one (its `burn_in` > 0). Its length: `burn_in_readings`,
    else the plan's `burn_in`, else NAB's probationary period. `false_alarms_per_day` re-plans the rate."""
    found = manifest_episode(postprocess, model)
    if found is None:
        return None
    plan, period_s = found
    source = "manifest"
    if false_alarms_per_day is not None:
        plan, source = for_target(plan, period_s, false_alarms_per_day), "replanned"
    burns = plan.burn_in > 0 if burn_in is None else burn_in
    readings = (burn_in_readings or plan.burn_in or NAB_PROBATION) if burns else 0
    return EpisodeRun(EpisodeAlerts(plan, period_s, readings), source)
