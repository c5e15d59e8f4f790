"""Alert episodes: one long anomaly is one alert, and the rate a user is promised is a rate of episodes.

Why: a per-reading rule pages once per crossing, so a threshold near the noise flickers (31 crossings of one
fault are 31 pages), and a rate planned per reading says nothing about pages per day. Here a surprise
(`edge.alerts.likelihood`) opens an episode when it reaches `on`, the episode stays open until the surprise has
stayed below `off` (< `on`: hysteresis) for `release` readings, and a crossing within `cooldown` readings of the
close re-opens the same episode (no new page). The onset, the first reading of an episode, is what pages.

`plan_on` places `on` for a target of false episodes per day: the surprise is a p-value on a log scale, so
readings/day * 10^-on bounds the false alerting readings per day; the share of them that start an episode (the
extremal index) is measured on a normal stretch (the device's burn-in, NAB's probationary rows) with the rule's
own merging. Every parameter travels in the manifest's
`postprocess.alerts.episode`; none is a constant of this code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.alerts import shapes
from edge.alerts.burnin import MIN_BURN_IN, NAB_PROBATION
from edge.alerts.calibration import SECONDS_PER_DAY
from edge.alerts.likelihood import MAX_SURPRISE, AnomalyLikelihood, LikelihoodSpec

ON_SOURCES = ("extremal", "conformal")  # how `plan_on` placed `on`
ON_PLAN_SHAPE = {"on": "number", "source": "string", "peaks": "integer", "days": "number", "level": "number"}
#: the manifest's `postprocess.alerts.episode` (`EpisodePlan.to_json`), as `shapes.check` reads it
PLAN_SHAPE = {"on": "number", "off": "number", "release": "integer", "cooldown": "integer", "min_on": "number",
              "false_episodes_per_day": "number", "burn_in?": "integer",
              "likelihood": {"short": "integer", "long": "integer", "min_history": "integer", "min_spread": "number",
                             "learn_in_alert?": "boolean", "tail?": "string", "adopt_after?": "integer"}}


@dataclass(frozen=True)
class EpisodeSpec:
    """The episode rule: levels in surprise units (-log10 p), durations in readings."""

    on: float
    off: float
    release: int
    cooldown: int
    min_on: float  # `plan_on` never goes below it (a short stretch cannot promise a rarer level)
    false_episodes_per_day: float

    def __post_init__(self) -> None:
        if not (0 < self.off <= self.on <= MAX_SURPRISE and 0 < self.min_on <= MAX_SURPRISE):
            raise ValueError(f"episode levels need 0 < off <= on <= {MAX_SURPRISE} and 0 < min_on <= "
                             f"{MAX_SURPRISE}, got on={self.on}, off={self.off}, min_on={self.min_on}")
        if self.release < 1 or self.cooldown < 0:
            raise ValueError(f"episode release >= 1 and cooldown >= 0 readings, got {self.release}, {self.cooldown}")
        if not (math.isfinite(self.false_episodes_per_day) and self.false_episodes_per_day > 0):
            raise ValueError(f"false_episodes_per_day must be > 0, got {self.false_episodes_per_day}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpisodeSpec:
        return cls(float(data["on"]), float(data["off"]), int(data["release"]), int(data["cooldown"]),
                   float(data["min_on"]), float(data["false_episodes_per_day"]))

    def to_json(self) -> dict[str, Any]:
        return {"on": self.on, "off": self.off, "release": self.release, "cooldown": self.cooldown,
                "min_on": self.min_on, "false_episodes_per_day": self.false_episodes_per_day}

    def with_on(self, on: float) -> EpisodeSpec:
        on = min(max(on, self.min_on), MAX_SURPRISE)
        return EpisodeSpec(on, min(self.off, on), self.release, self.cooldown, self.min_on,
                           self.false_episodes_per_day)


class EpisodeRule:
    """Surprise in, (active, onset) out; `episodes` counts the onsets."""

    def __init__(self, spec: EpisodeSpec) -> None:
        self.spec = spec
        self.active = False
        self.episodes = 0
        self._quiet = 0  # readings below `off` in the open episode
        self._since_close: int | None = None  # readings since the last close

    def update(self, surprise: float | None) -> tuple[bool, bool]:
        """Returns (active, onset): onset is True on the first reading of a new episode only."""
        high = surprise is not None and surprise >= self.spec.on
        if not self.active:
            if self._since_close is not None:
                self._since_close += 1
            if not high:
                return False, False
            self.active, self._quiet = True, 0
            onset = self._since_close is None or self._since_close > self.spec.cooldown
            self.episodes += onset
            return True, onset
        low = surprise is None or surprise < self.spec.off
        self._quiet = self._quiet + 1 if low else 0
        if self._quiet >= self.spec.release:
            self.active, self._since_close = False, 0
        return self.active, False


def episode_peaks(surprises: np.ndarray, level: float, merge: int) -> np.ndarray:
    """The highest surprise of each cluster of readings >= `level`, clusters closer than `merge` readings joined
    (what the rule would count as one episode)."""
    above = np.flatnonzero(np.nan_to_num(surprises, nan=-np.inf) >= level)
    if len(above) == 0:
        return np.empty(0)
    breaks = np.flatnonzero(np.diff(above) > merge) + 1
    return np.array([float(np.max(surprises[c])) for c in np.split(above, breaks)])


@dataclass(frozen=True)
class OnPlan:
    """Where `on` was put and why (for the manifest and `stats.quality`)."""

    on: float
    source: str  # "extremal" (the bound times the stretch's extremal index) or "conformal" (the bound alone)
    peaks: int  # clusters above `level` on the stretch
    days: float
    level: float

    def to_json(self) -> dict[str, Any]:
        return {"on": self.on, "source": self.source, "peaks": self.peaks, "days": self.days, "level": self.level}

    @classmethod
    def from_json(cls, data: dict[str, Any], spec: EpisodeSpec) -> OnPlan:
        """A placement read back (a state file), every field checked against the rule it is for: ValueError (a
        wrong JSON type: `edge.alerts.shapes.ShapeError`, naming the field and what was expected)."""
        shapes.check(data, ON_PLAN_SHAPE, "on_plan")
        on, source, peaks, days, level = (data[k] for k in ON_PLAN_SHAPE)
        numbers = (on, days, level)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in numbers):
            raise ValueError(f"on, days and level must be finite numbers, got {on!r}, {days!r}, {level!r}")
        if not spec.min_on <= on <= MAX_SURPRISE or days < 0:
            raise ValueError(f"on must lie in [{spec.min_on}, {MAX_SURPRISE}] (days >= 0), got on={on}, days={days}")
        if source not in ON_SOURCES or isinstance(peaks, bool) or not isinstance(peaks, int) or peaks < 0:
            raise ValueError(f"source must be one of {ON_SOURCES} and peaks a count, got {source!r}, {peaks!r}")
        return cls(float(on), source, peaks, float(days), float(level))


def plan_on(surprises: np.ndarray, period_s: float, spec: EpisodeSpec, level: float = 2.0,
            min_exceed: int = 10) -> OnPlan:
    """`on` for `spec.false_episodes_per_day` on a normal stretch of surprises (NaN = none yet).

    The surprise is a p-value on a log scale (`edge.alerts.likelihood`, rank tail): a normal reading reaches s
    with probability about 10^-s, so readings/day * 10^-s bounds the alerting readings per day, and the
    episodes per day are that times the share of exceedances that start an episode (the extremal index theta,
    one over the mean cluster size), estimated on the stretch at `level` with the rule's own merging:
    on = log10(readings/day * theta / target). Fewer than `min_exceed` exceedances: theta = 1 (the bound,
    "conformal"). Never below `spec.min_on`."""
    valid = surprises[~np.isnan(surprises)]
    days = len(valid) * period_s / SECONDS_PER_DAY
    exceed = int(np.sum(valid >= level))
    clusters = len(episode_peaks(surprises, level, spec.release + spec.cooldown))
    theta = clusters / exceed if exceed >= min_exceed else 1.0
    on = math.log10(SECONDS_PER_DAY / period_s * theta / spec.false_episodes_per_day)
    source = "extremal" if exceed >= min_exceed else "conformal"
    return OnPlan(min(max(on, spec.min_on), MAX_SURPRISE), source, clusters, days, level)


@dataclass(frozen=True)
class EpisodePlan:
    """The whole rule as the manifest carries it: likelihood windows + episode levels, and the readings of
    the device's burn-in that place `on` on the live stream (0: the plan's own `on` throughout)."""

    likelihood: LikelihoodSpec
    episode: EpisodeSpec
    burn_in: int = 0

    def __post_init__(self) -> None:
        if self.burn_in < 0:
            raise ValueError(f"episode burn_in must be >= 0 readings, got {self.burn_in}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpisodePlan:
        return cls(LikelihoodSpec.from_json(data["likelihood"]), EpisodeSpec.from_json(data),
                   int(data.get("burn_in", 0)))

    @classmethod
    def for_period(cls, period_s: float, per_day: float) -> EpisodePlan:
        """The plan a trainer writes for a stream read every `period_s` seconds, durations in readings from
        hours: an average of 3 readings, two weeks of history (at least 200 readings), a day (at least 100
        readings) before the first surprise, episodes closed after half an hour quiet, re-opened within 12 hours
        (chosen on NAB's artificialWithAnomaly and realAWSCloudwatch files; docs/real-data.md); `on` re-placed
        after a burn-in of NAB's probationary length (750 readings, `NAB_PROBATION`). An alert's readings stay
        out of the history unless it lasts 3 hours (then it is a new normal): a fault learned as normal would
        keep its repeat from paging for the two weeks the history spans."""
        per_hour = max(1, round(3600.0 / period_s))
        on = min(max(math.log10(SECONDS_PER_DAY / period_s / per_day), 2.0), MAX_SURPRISE)  # the conformal bound
        long = max(200, 14 * 24 * per_hour)
        likelihood = LikelihoodSpec(short=3, long=long, min_history=min(long, max(100, 24 * per_hour)),
                                    min_spread=0.05, learn_in_alert=False, adopt_after=3 * per_hour)
        episode = EpisodeSpec(on=on, off=min(2.0, on), release=max(1, per_hour // 2), cooldown=12 * per_hour,
                              min_on=2.0, false_episodes_per_day=per_day)
        return cls(likelihood, episode, NAB_PROBATION)

    def to_json(self) -> dict[str, Any]:
        return {**self.episode.to_json(), "likelihood": self.likelihood.to_json(), "burn_in": self.burn_in}


class EpisodeAlerts:
    """The whole rule as a stream sees it: score -> surprise (`AnomalyLikelihood`) -> episode (`EpisodeRule`).

    With `burn_in` > 0 the first `burn_in` readings run on the plan's own `on` while their surprises are kept;
    then `on` is planned from them (`plan_on`) for the rest of the stream: NAB's probationary period, or a
    device that starts with no plan fitted to its stream."""

    def __init__(self, plan: EpisodePlan, period_s: float, burn_in: int = 0) -> None:
        self.plan, self.period_s, self.burn_in = plan, period_s, burn_in
        self.likelihood = AnomalyLikelihood(plan.likelihood)
        self.rule = EpisodeRule(plan.episode)
        self.on_plan: OnPlan | None = None
        self._seen: list[float] = []
        self._judged = 0  # readings of the burn-in with a surprise (after the likelihood's warm-up)

    @property
    def burn_in_left(self) -> int:
        """Readings of the burn-in still to come (0: `on` is placed, or no burn-in). Past `burn_in`, the readings
        still to be judged: a burn-in shorter than the likelihood's warm-up (its `min_history`, the model's window)
        would place `on` on no surprise at all and call it learned, so it goes on until `MIN_BURN_IN` are seen."""
        if not self.burn_in or self.on_plan is not None:
            return 0
        return max(self.burn_in - len(self._seen), self.likelihood.warming + MIN_BURN_IN - self._judged, 0)

    @property
    def burn_in_taken(self) -> int:
        """Readings the burn-in in progress has taken (0 once `on` is placed)."""
        return len(self._seen)

    def place(self, on_plan: OnPlan) -> None:
        """`on` from now on: the burn-in's placement, or (the agent restarted) the one an earlier burn-in of this
        rule made and saved; the burn-in is over either way."""
        self.on_plan, self._seen, self._judged = on_plan, [], 0
        self.rule.spec = self.plan.episode.with_on(on_plan.on)

    def learn_again(self) -> None:
        """A new burn-in of `on` (`cmd/reset`), on the plan's own `on` meanwhile; the likelihood's history stays
        (the same model's scores of the same stream)."""
        if self.burn_in:
            self.on_plan, self._seen, self._judged = None, [], 0
            self.rule.spec = self.plan.episode

    def update(self, score: float | None) -> tuple[bool, bool, float | None]:
        """(active, onset, surprise) for one reading; `score` None while the model's window fills."""
        surprise = None if score is None else self.likelihood.update(
            score, in_alert=self.rule.active, levels=(self.rule.spec.on, self.rule.spec.off))
        if self.burn_in and self.on_plan is None:
            self._seen.append(math.nan if surprise is None else surprise)
            self._judged += surprise is not None
            if self.burn_in_left == 0:
                self.place(plan_on(np.asarray(self._seen), self.period_s, self.plan.episode))
        active, onset = self.rule.update(surprise)
        return active, onset, surprise
