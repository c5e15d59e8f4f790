"""Which alert rule a sensor runs, and the sentence `python -m edge check` says about it.

The pipeline decides with `edge.alerts.plan.resolve` (the k-of-n rule's threshold and its source) and
`runs_episodes` (the manifest's episode plan, unless a threshold from elsewhere or the config's debounce rules);
`rule_lines` makes the same decision from the config, the model's manifest entry and the state dir, without
changing anything there (a damaged state file is named, not set aside: the agent does that when it starts), so a
user knows before a start whether a sensor burns in first or resumes what it learned before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.alerts.burnin import MIN_BURN_IN
from edge.alerts.episodic import EpisodeRun, episode_alerts
from edge.alerts.plan import AlertSettings, resolve
from edge.pipelines.sensor.config import SensorConfig
from edge.pipelines.sensor.learning import burn_in_length, saved_rule
from edge.pipelines.sensor.rulefiles import PlanFile, ThresholdFile
from edge.sources import reading_source
from edge.sources.feeds import csv_layout
from edge.sources.frames import SourceError


def runs_episodes(cfg: SensorConfig, settings: AlertSettings) -> bool:
    """The episode rule runs (when the manifest has its plan) while the rule in force is the manifest's own plan
    or its re-plan for the config's rate; a threshold from a command, a calibration, a burn-in or the config, or
    the config's debounce, is a k-of-n rule's."""
    return settings.source in ("manifest", "replanned") and cfg.debounce is None


def rule_lines(cfg: SensorConfig, scorer: Any, state_dir: Path) -> list[str]:
    """`edge check`'s lines for one sensor: the rule it will run, whether it burns in first or resumes a rule saved
    in `state_dir`, and any saved file it cannot use. Reads the state files, never moves or writes them."""
    entry, who = scorer.entry, f"sensor {cfg.name}"
    commands = ThresholdFile(state_dir / f"{cfg.name}.threshold.json", read_only=True)
    plans = PlanFile(state_dir / f"{cfg.name}.alerts.json", read_only=True)
    commanded, (calibrated, source) = commands.load(), saved_rule(plans, entry, cfg)
    damaged = [f.problem for f in (commands.file, plans.file) if f.problem]
    settings = resolve(cfg, entry.postprocess, entry.name, commanded, calibrated, source)
    run = episode_alerts(entry.postprocess, entry.name, cfg.burn_in, cfg.burn_in_readings,
                         cfg.false_alarms_per_day) if runs_episodes(cfg, settings) else None
    if run is not None:
        line = _episode_rule(run, plans, entry.sha256, getattr(scorer, "window", 1))
        damaged += [plans.file.problem] if plans.file.problem and plans.file.problem not in damaged else []
    else:
        line = _k_of_n_rule(cfg, settings, calibrated is not None, commands, plans, entry)
    return [f"{who}: {line}", *(f"{who}: {problem}" for problem in damaged)]


def _episode_rule(run: EpisodeRun, plans: PlanFile, model_sha256: str, window: int) -> str:
    plan = run.alerts.plan
    replanned = ", re-planned for the config's false_alarms_per_day" if run.source == "replanned" else ""
    line = (f"alert rule: episode (the manifest's postprocess.alerts.episode{replanned}: one alert per anomaly "
            f"episode, {plan.episode.false_episodes_per_day:g} false episodes a day planned)")
    if not run.alerts.burn_in:
        return f"{line}; no burn-in: its level on = {plan.episode.on:.3g} as planned, from the first reading"
    saved = plans.load_on(model_sha256, run.basis(), plan.episode)
    if saved is not None:
        return (f"{line}; resumes its level on = {saved.on:.3g}, burned in before and saved in {plans.path}: "
                "no new burn-in (cmd/reset starts one)")
    judged = window - 1 + plan.likelihood.min_history + MIN_BURN_IN  # the first surprise, then MIN_BURN_IN of them
    first = (f"the first {run.alerts.burn_in} readings" if run.alerts.burn_in >= judged else
             f"the first {judged} readings, not {run.alerts.burn_in}: the likelihood judges none before it holds "
             f"{plan.likelihood.min_history} and the model's window is full, and a burn-in takes {MIN_BURN_IN} judged "
             "ones at least")
    return (f"{line}; burns in first: its level on is placed on {first} (the plan's on = {plan.episode.on:.3g} "
            f"meanwhile), then saved in {plans.path}")


def _k_of_n_rule(cfg: SensorConfig, settings: AlertSettings, saved: bool, commands: ThresholdFile, plans: PlanFile,
                 entry: Any) -> str:
    alerts = entry.postprocess.get("alerts")
    unused = isinstance(alerts, dict) and alerts.get("episode") is not None
    line = "alert rule: k-of-n threshold" + (" (the manifest's episode plan is not used: a threshold or a debounce "
                                             "is set for this sensor)" if unused else "")
    if settings.source == "burn_in" and not saved:
        _needs_a_clock(cfg, entry.preprocess)
        fixed = cfg.debounce is not None and None not in cfg.debounce  # the config's k-of-n is kept, not learned
        learned = f"its threshold (for the config's {cfg.debounce_k}-of-{cfg.debounce_n}) is" if fixed else \
            "its threshold and debounce are"
        return (f"{line}; burns in first: {learned} learned from the first "
                f"{burn_in_length(cfg)} readings (nothing alerts meanwhile; each reading needs a 'ts' that is a "
                f"time, as a rate per day does), then saved in {plans.path}")
    when = "for every score" if settings.n == 1 else f"when {settings.k} of the last {settings.n} scores are"
    origin = {
        "manifest": f"the manifest's ({'its alert plan' if alerts is not None else 'postprocess.threshold'}); "
                    "no burn-in",
        "replanned": "the manifest's alert plan re-planned for the config's false_alarms_per_day; no burn-in",
        "config": "the config's `threshold`; no burn-in",
        "command": f"set by cmd/threshold, saved in {commands.path}",
        "calibrated": f"fitted by cmd/calibrate, saved in {plans.path}",
        "burn_in": f"burned in before, saved in {plans.path}: resumed, no new burn-in (cmd/reset starts one)",
    }[settings.source]
    return f"{line}: an alert {when} above {settings.threshold:.4g}; the threshold is {origin}"


def _needs_a_clock(cfg: SensorConfig, preprocess: dict[str, Any]) -> None:
    """ValueError (a problem of `edge check`) when the sensor reads a CSV without a time column: the k-of-n
    burn-in plans a rate per day, so on readings without a time it never finishes and the sensor runs deaf (the
    agent says "runs but cannot alert"); check said "burns in first" (a user's trial). Other sources: the
    readings' `ts` cannot be known before they come."""
    spec = reading_source(cfg.source)
    if spec.kind != "csv":
        return
    path, _, columns = spec.arg.partition(":")
    features = [str(f) for f in preprocess.get("features") or []] or None
    try:
        layout = csv_layout(path, [c for c in columns.split(",") if c] or None, features, preprocess.get("time_column"))
    except SourceError:
        return  # the source check says why it cannot be read
    if layout.time_index is None:
        raise ValueError(f"burns in, but {path} has no time column (header {layout.header}): a burn-in plans a rate "
                         "per day and never finishes on readings without a time; add a timestamp column, or set "
                         "`threshold` or `burn_in = false`")
