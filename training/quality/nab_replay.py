"""Every row of a NAB file through the agent's own code: the scorer (`edge.pipelines.sensor.scorer`), then the
rules (`edge.alerts.rule` as shipped, `edge.alerts.likelihood` + `edge.alerts.episode`), one reading at a time.

Why not a batch re-implementation: what NAB scores must be what would page a user of the running agent, so the
same classes run here, fed in time order. The raw scores are cached per model file (reports/nab/scores/, keyed
by the model's sha256), so a rule change re-runs in seconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from edge.alerts.calibration import AlertPlan
from edge.alerts.episode import EpisodeAlerts, EpisodePlan, OnPlan
from edge.alerts.rule import AnomalyRule
from edge.models.manifest import ModelEntry, read_manifest
from edge.models.runtime import TFLiteModel
from edge.pipelines.sensor.scorer import AnomalyScorer


@dataclass(frozen=True)
class Replay:
    """Per row: alerting (the rule active) and onset (an episode's first reading)."""

    alerting: np.ndarray
    onsets: np.ndarray
    planned_per_day: float | None
    note: str = ""


def entry_of(models: Path) -> ModelEntry:
    return read_manifest(models / "manifest.json").get("autoencoder")


def raw_scores(models: Path, frame: pd.DataFrame, cache: Path) -> np.ndarray:
    """The reconstruction error of every row (NaN until the model's window is full), by the agent's scorer."""
    entry = entry_of(models)
    path = cache / f"{entry.sha256[:16]}-{len(frame)}.npy"
    if path.exists():
        return np.load(path)
    scorer = AnomalyScorer(entry, TFLiteModel.from_entry(entry, models, num_threads=1))
    out = np.full(len(frame), np.nan)
    for i, (ts, value) in enumerate(zip(frame["timestamp"].astype(str), frame["value"].to_numpy(float),
                                        strict=True)):
        got = scorer.score([value], ts)
        if got is not None:
            out[i] = got
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def stock_rule(entry: ModelEntry, scores: np.ndarray) -> Replay:
    """The shipped k-of-n rule with the manifest's planned threshold (`postprocess.alerts`)."""
    plan = AlertPlan.from_json(entry.postprocess["alerts"])
    rule = AnomalyRule(plan.threshold, plan.k, plan.n)
    alerting = np.array([False if np.isnan(s) else rule.update(float(s))[0] for s in scores])
    onsets = alerting & ~np.concatenate([[False], alerting[:-1]])
    return Replay(alerting, onsets, plan.expected_per_day)


def episode_plan(entry: ModelEntry) -> EpisodePlan:
    """The episode rule's parameters: the manifest's `postprocess.alerts.episode`, else the plan a trainer
    writes for the stream's period and target (`EpisodePlan.for_period`)."""
    alerts = entry.postprocess["alerts"]
    if alerts.get("episode"):
        return EpisodePlan.from_json(alerts["episode"])
    return EpisodePlan.for_period(float(alerts["period_s"]), float(alerts["false_alarms_per_day"]))


def episode_rule(scores: np.ndarray, plan: EpisodePlan, period_s: float, burn_in: int,
                 plan_level: bool = True) -> tuple[Replay, OnPlan | None]:
    """The likelihood + episode rule (`edge.alerts.episode.EpisodeAlerts`), one row at a time; `on` planned from
    the first `burn_in` rows (NAB's probationary period) unless `plan_level` is False (the plan's own `on`)."""
    alerts = EpisodeAlerts(plan, period_s, burn_in if plan_level else 0)
    alerting = np.zeros(len(scores), bool)
    onsets = np.zeros(len(scores), bool)
    for i, s in enumerate(scores):
        alerting[i], onsets[i], _ = alerts.update(None if np.isnan(s) else float(s))
    return Replay(alerting, onsets, plan.episode.false_episodes_per_day), alerts.on_plan


def variants(plan: EpisodePlan) -> dict[str, tuple[EpisodePlan, bool]]:
    """The ablation: the full rule, then each part taken out (planned `on` or not)."""
    e, lk = plan.episode, plan.likelihood
    return {
        "full rule": (plan, True),
        "no hysteresis (off = on, release 1)": (EpisodePlan(lk, dataclasses.replace(e, off=e.on, release=1)), True),
        "no cool-down": (EpisodePlan(lk, dataclasses.replace(e, cooldown=0)), True),
        "no short average (1 reading)": (EpisodePlan(dataclasses.replace(lk, short=1), e), True),
        "history frozen during alerts": (EpisodePlan(dataclasses.replace(lk, learn_in_alert=False), e), True),
        "Gaussian tail (HTM's) instead of the rank": (EpisodePlan(dataclasses.replace(lk, tail="gaussian"), e), True),
        "on = the conformal bound (no burn-in)": (plan, False),
    }
