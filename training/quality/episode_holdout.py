"""The episode rule's own false episodes per day on held-out normal readings, out of sample.

Why: the agent runs the episode rule when the manifest plans one (`postprocess.alerts.episode`), so the figure
the CLI prints as "expected false alerts/day" must be that rule's, measured on readings that set nothing it
rests on. Here the very object and call the agent makes (`edge.alerts.episodic.episode_alerts` on the manifest
entry's postprocess, one `update(score)` per reading in time order: `training.quality.nab_replay.episode_rule`)
runs over the quantized file's scores of the whole normal period, as a device started on it with the default
config would (the plan's burn-in places `on` on the first readings). Onsets are counted only on rows that
trained no weight (the held-out slice), after the burn-in that placed `on` and after the likelihood's first
history (no surprise, so no alert, is possible before it: counting those rows would dilute the rate). The
likelihood's rolling history is causal: each reading is judged against readings before it, as on the device.
Its history holds the training rows' in-sample scores, which sit lower than fresh ones: if anything the
held-out rows look more surprising, so the figure errs high.

Too few counted days say little about a rare rate (zero in two days against 0.1/day): the figure is still
given, with a warning of the span it would need (`edge.alerts.support`); no counted row at all gives no
figure, and the reason in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.alerts.calibration import SECONDS_PER_DAY
from edge.alerts.episode import EpisodePlan
from edge.alerts.episodic import manifest_episode
from edge.alerts.support import supported_rate, too_short
from training.quality.nab_replay import episode_rule

METHOD = ("the episode rule as the agent runs it (edge.alerts.episodic.episode_alerts, the plan's burn-in, one "
          "update per reading) over the file's scores of the whole normal period in time order; onsets counted "
          "on held-out normal rows only, after the burn-in and the likelihood's first history")


@dataclass(frozen=True)
class HeldOutEpisodes:
    """What the count rests on: `rows` [start, stop) of the normal period counted (empty: nothing could be),
    `placed` rows before `start` that set something (the model's weights, `on`, the likelihood's first history),
    and the onsets on the counted rows."""

    planned_per_day: float
    period_s: float
    rows: tuple[int, int]
    heldout_start: int
    burn_in: int
    first_surprise: int
    onsets: int

    @property
    def days(self) -> float:
        return (self.rows[1] - self.rows[0]) * self.period_s / SECONDS_PER_DAY

    @property
    def per_day(self) -> float | None:
        return self.onsets / self.days if self.days else None

    def normal_rows_needed(self) -> int:
        """The normal period (--normal-rows) whose held-out slice, after the burn-in and first history, spans
        1 / planned days at this period (the held-out slice is the same share of it as now)."""
        need = math.ceil(SECONDS_PER_DAY / (self.period_s * self.planned_per_day))
        normal, heldout = self.rows[1], max(1, self.rows[1] - self.heldout_start)
        return max(-(-need * normal // heldout), max(self.burn_in, self.first_surprise) + need)

    def warning(self) -> str | None:
        """The sentence the CLI prints under its table (and the manifest keeps), or None: the span suffices."""
        heldout, needed = self.rows[1] - self.heldout_start, self.normal_rows_needed()
        more = (f"about --normal-rows {needed} at this reading period would leave the {1 / self.planned_per_day:g} "
                "days of held-out normal readings the plan needs")
        if not self.days:
            return (f"the episode rule's false episodes/day cannot be measured out of sample: all {heldout} held-out "
                    f"normal readings fall within its burn-in ({self.burn_in} readings place its level) or before "
                    f"its first surprise (reading {self.first_surprise + 1}); no figure is given. Give more normal "
                    f"data: {more}")
        if not too_short(self.days, self.planned_per_day):
            return None
        return (f"the held-out normal data cannot support the promise of {self.planned_per_day:g} false "
                f"episodes/day: {self.onsets} episodes in {self.days:.2g} days counted out of sample can check a "
                f"rate down to about {supported_rate(self.days):.2g}/day; {more}")

    def to_metrics(self) -> dict[str, Any]:
        """The manifest's `metrics.episode_*` figures."""
        return {"episode_false_per_day_heldout": self.per_day, "episode_false_episodes_heldout": self.onsets,
                "episode_heldout_days": self.days, "episode_heldout_rows": list(self.rows),
                "episode_heldout_supported_per_day": supported_rate(self.days),
                "episode_heldout_warning": self.warning(), "episode_heldout_method": METHOD}


def counted_start(plan: EpisodePlan, heldout_start: int, first_scored: int) -> tuple[int, int]:
    """(first row counted, first row with a surprise): after every training row, the burn-in, and the
    likelihood's `min_history` scores (`edge.alerts.likelihood`: no surprise before them)."""
    first_surprise = first_scored + plan.likelihood.min_history
    return max(heldout_start, plan.burn_in, first_surprise), first_surprise


def held_out_episodes(postprocess: dict[str, Any], scores: np.ndarray, heldout_start: int) -> HeldOutEpisodes | None:
    """The episode rule's onsets on the held-out rows of a normal period: `scores` one per row in time order (NaN
    while the model's window fills), rows from `heldout_start` on trained no weight. None: no episode plan."""
    found = manifest_episode(postprocess, "autoencoder")
    if found is None:
        return None
    plan, period_s = found
    scored = np.flatnonzero(~np.isnan(scores))
    start, first_surprise = counted_start(plan, heldout_start, int(scored[0]) if len(scored) else len(scores))
    replay, _ = episode_rule(np.asarray(scores, np.float64), postprocess, plan.burn_in)
    start = min(start, len(scores))
    return HeldOutEpisodes(plan.episode.false_episodes_per_day, period_s, (start, len(scores)), heldout_start,
                           plan.burn_in, first_surprise, int(replay.onsets[start:].sum()))
