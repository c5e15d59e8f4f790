"""Every row of a NAB file through the agent's own code: the scorer (`edge.pipelines.sensor.scorer`), then the
rules, one reading at a time: the episode rule exactly as the sensor pipeline builds and calls it
(`edge.alerts.episodic.episode_alerts` from the manifest entry, then `EpisodeRun.update(score)` per reading, the
config's `burn_in = true` + `burn_in_readings` = NAB's probationary rows), and the older k-of-n rule
(`edge.alerts.rule`) that a manifest without an episode plan runs.

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
from edge.alerts.episode import EpisodePlan, OnPlan
from edge.alerts.episodic import episode_alerts
from edge.alerts.rule import AnomalyRule
from edge.models.manifest import ModelEntry, read_manifest
from edge.models.runtime import TFLiteModel
from edge.pipelines.sensor.scorer import AnomalyScorer


@dataclass(frozen=True)
class Replay:
    """Per row: alerting (the rule active), onset (an episode's first reading) and, for the episode rule, the
    surprise the rule judged (NaN: none yet)."""

    alerting: np.ndarray
    onsets: np.ndarray
    planned_per_day: float | None
    note: str = ""
    surprise: np.ndarray | None = None


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
    """The k-of-n rule (what the agent runs on a manifest without an episode plan) with the manifest's planned
    threshold (`postprocess.alerts`)."""
    plan = AlertPlan.from_json(entry.postprocess["alerts"])
    rule = AnomalyRule(plan.threshold, plan.k, plan.n)
    alerting = np.array([False if np.isnan(s) else rule.update(float(s))[0] for s in scores])
    onsets = alerting & ~np.concatenate([[False], alerting[:-1]])
    return Replay(alerting, onsets, plan.expected_per_day)


def episode_plan(entry: ModelEntry) -> EpisodePlan:
    """The episode rule's parameters: the manifest's `postprocess.alerts.episode`, else (a model cached before
    the trainer wrote it) the plan the trainer writes now for the stream's period and target
    (`EpisodePlan.for_period`, training.tasks.autoencoder)."""
    alerts = entry.postprocess["alerts"]
    if alerts.get("episode"):
        return EpisodePlan.from_json(alerts["episode"])
    return EpisodePlan.for_period(float(alerts["period_s"]), float(alerts["false_alarms_per_day"]))


def with_plan(entry: ModelEntry, plan: EpisodePlan) -> dict:
    """The entry's postprocess carrying `plan` as its `alerts.episode` (what the agent reads)."""
    return {**entry.postprocess, "alerts": {**entry.postprocess["alerts"], "episode": plan.to_json()}}


def episode_rule(scores: np.ndarray, postprocess: dict, burn_in: int,
                 plan_level: bool = True) -> tuple[Replay, OnPlan | None]:
    """The episode rule the agent runs on this manifest entry, built and called as the sensor pipeline does
    (`edge.pipelines.sensor.pipeline.SensorPipeline._follow_episodes` / `_handle_episode`): the config's
    `burn_in = true` with `burn_in_readings` = NAB's probationary rows, or `burn_in = false` when `plan_level`
    is False (the plan's own `on` throughout)."""
    run = episode_alerts(postprocess, "autoencoder", burn_in=plan_level, burn_in_readings=burn_in)
    assert run is not None, "the postprocess carries no episode plan"
    alerting = np.zeros(len(scores), bool)
    onsets = np.zeros(len(scores), bool)
    surprise = np.full(len(scores), np.nan)
    for i, s in enumerate(scores):
        alerting[i], onsets[i] = run.update(None if np.isnan(s) else float(s))
        surprise[i] = np.nan if run.surprise is None else run.surprise
    return (Replay(alerting, onsets, run.alerts.rule.spec.false_episodes_per_day, surprise=surprise),
            run.alerts.on_plan)


def fixed_on(plan: EpisodePlan, on: float) -> EpisodePlan:
    """The plan with `on` pinned at `on` (run with `plan_level=False`: no burn-in re-places it)."""
    return EpisodePlan(plan.likelihood, plan.episode.with_on(on), 0)


def variants(plan: EpisodePlan) -> dict[str, tuple[EpisodePlan, bool]]:
    """The ablation: the full rule, then each part taken out (planned `on` or not)."""
    e, lk = plan.episode, plan.likelihood
    return {
        "full rule": (plan, True),
        "no hysteresis (off = on, release 1)": (EpisodePlan(lk, dataclasses.replace(e, off=e.on, release=1)), True),
        "no cool-down": (EpisodePlan(lk, dataclasses.replace(e, cooldown=0)), True),
        "no short average (1 reading)": (EpisodePlan(dataclasses.replace(lk, short=1), e), True),
        "alerting readings learned at once": (EpisodePlan(dataclasses.replace(lk, learn_in_alert=True), e), True),
        "alerting readings never learned": (EpisodePlan(dataclasses.replace(lk, learn_in_alert=False,
                                                                            adopt_after=0), e), True),
        "Gaussian tail (HTM's) instead of the rank": (EpisodePlan(dataclasses.replace(lk, tail="gaussian"), e), True),
        "on = the conformal bound (no burn-in)": (plan, False),
    }
