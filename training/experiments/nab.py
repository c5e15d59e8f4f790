"""`python -m training nab` (`make nab`): the deployed path on every file of the NAB copy, scored by NAB's rules.

Per file: the autoencoder trained through the CLI on NAB's probationary rows (`nab_train`, cached), every row
through the agent's scorer and rules (`training.quality.nab_replay`), detections = alert onsets (and, to show
the difference, every alerting reading), NAB's three profiles (`training.quality.nab_score`). The k-of-n
rule, the likelihood + episode rule and its ablation are scored side by side with numenta, ARTime and null, and
the tables go into docs/real-data.md (`training.quality.nab_report`). A file the CLI refuses is scored as a
detector that never alerts, with the refusal in the table. Not part of `make test`; tests/test_nab.py runs a
subset.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge.alerts.episode import EpisodePlan
from edge.alerts.plan import check_plan
from training.argtypes import whole
from training.experiments.nab_train import Trained, train_all
from training.paths import PROJECT_ROOT
from training.quality import nab_replay, nab_report
from training.quality.nab_score import (
    PROFILES,
    FileLabels,
    Profile,
    label_rows,
    load_profiles,
    load_windows,
    nab_root,
    published_scores,
    score_detections,
)

log = logging.getLogger("training.nab")
REPORTS = PROJECT_ROOT / "reports" / "nab"
DOC = PROJECT_ROOT / "docs" / "real-data.md"
MAIN, STOCK = "episode rule: full", "k-of-n rule (older manifests)"
TUNED = ("artificialWithAnomaly", "realAWSCloudwatch")
#: the fixed `on` levels of the label-tuned comparison (NAB's protocol for its published detectors)
FIXED_ON = (2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75, 4.0)


def scores_of(labels: FileLabels, detections: np.ndarray, profiles: dict[str, Profile]) -> dict[str, float]:
    return {p: float(score_detections(labels, detections, profiles[p]).score) for p in PROFILES}


def rate(labels: FileLabels, onsets: np.ndarray, period_s: float, planned: float | None) -> dict[str, float]:
    """False episodes (onsets outside every window, scored rows) per day of scored rows outside the windows."""
    normal = (np.arange(labels.rows) >= labels.probation) & (labels.window_of_row < 0)
    days = float(normal.sum()) * period_s / 86400.0
    episodes = int(np.sum(onsets & normal))
    return {"days": days, "episodes": episodes, "observed": episodes / days if days else float("nan"),
            "planned": float(planned) if planned is not None else float("nan")}


def window_losses(labels: FileLabels, replay: nab_replay.Replay, on: float) -> list[dict[str, Any]]:
    """Per scored window: detected or not, and the best surprise the rule saw in it (before its first onset
    there), so a miss can be told apart: the model's score never rose (far below `on`) or the level was just
    out of reach (within NEAR of it)."""
    out = []
    scored = np.arange(labels.rows) >= labels.probation
    for w in sorted(set(labels.window_of_row[scored & (labels.window_of_row >= 0)].tolist())):
        rows = np.flatnonzero((labels.window_of_row == w) & scored)
        hit = bool(replay.onsets[rows].any())
        seen = replay.surprise[rows] if replay.surprise is not None else np.full(len(rows), np.nan)
        best = float(np.nanmax(seen)) if np.isfinite(seen).any() else float("nan")
        out.append({"window": int(w), "detected": hit, "best_surprise": best, "on": on,
                    "near": bool(not hit and best >= on - nab_report.NEAR)})
    return out


def fixed_on_scores(scores: np.ndarray, entry: Any, plan: EpisodePlan, labels: FileLabels,
                    profiles: dict[str, Profile]) -> dict[str, dict[str, float]]:
    """The rule with `on` pinned at each FIXED_ON level (no burn-in): the raw NAB scores per level, from which
    the report picks the one level that is best over all files -- NAB's protocol for its published detectors
    (a threshold tuned on the labels, in sample), shown beside the rule's own placement, which saw no label."""
    out = {}
    for on in FIXED_ON:
        replay, _ = nab_replay.episode_rule(scores, nab_replay.with_plan(entry, nab_replay.fixed_on(plan, on)),
                                            labels.probation, plan_level=False)
        out[f"{on:g}"] = scores_of(labels, replay.onsets, profiles)
    return out


@dataclass(frozen=True)
class FileRuns:
    """Every rule on one file: {key: Replay}, the full rule's `on` placement, the reading period, and the raw
    NAB scores of the rule with `on` pinned at each FIXED_ON level."""

    runs: dict[str, Any]
    on_plan: dict[str, Any]
    period: float
    fixed_on: dict[str, dict[str, float]]


def rule_runs(trained: Trained, frame: pd.DataFrame, labels: FileLabels, work: Path,
              profiles: dict[str, Profile]) -> FileRuns:
    entry = nab_replay.entry_of(trained.models)
    scores = nab_replay.raw_scores(trained.models, frame, work / "scores")
    period = float(entry.postprocess["alerts"]["period_s"])
    plan = nab_replay.episode_plan(entry)
    runs: dict[str, Any] = {}
    on_plan: dict = {}
    for label, (variant, planned) in nab_replay.variants(plan).items():
        replay, chosen = nab_replay.episode_rule(scores, nab_replay.with_plan(entry, variant), labels.probation,
                                                 planned)
        runs[variant_key(label)] = replay
        if label == "full rule" and chosen is not None:
            on_plan = {"on": chosen.on, "source": chosen.source, "peaks": chosen.peaks, "days": chosen.days}
    runs[STOCK] = nab_replay.stock_rule(entry, scores)
    return FileRuns(runs, on_plan, period, fixed_on_scores(scores, entry, plan, labels, profiles))


def variant_key(label: str) -> str:
    return f"episode rule: {label.replace('full rule', 'full')}"


def rule_keys() -> list[str]:
    """Every rule scored, the full episode rule first, the shipped rule last."""
    variants = [variant_key(label) for label in nab_replay.variants(EpisodePlan.for_period(300.0, 0.1))]
    return [*variants, f"{MAIN}, every alerting reading", STOCK, f"{STOCK}, every alerting reading"]


def agent_refusal(trained: Trained) -> str:
    """Why there is no working detector: the CLI refused, or the agent would refuse the manifest's plan
    (`edge.alerts.plan.check_plan`, what the agent checks at start); "" when it runs."""
    if not trained.ok:
        return f"CLI: {trained.error}"
    try:
        check_plan(nab_replay.entry_of(trained.models).postprocess.get("alerts"), "postprocess.alerts")
    except ValueError as exc:
        return f"agent refuses: {exc}"
    return ""


def one_file(root: Path, name: str, trained: Trained, windows: list, profiles: dict[str, Profile],
             published: dict[str, dict[str, dict[str, float]]], work: Path) -> dict[str, Any]:
    frame = pd.read_csv(root / "data" / name)
    labels = label_rows(frame["timestamp"], windows)
    scores: dict[str, dict[str, float]] = {
        f"{d}, published": {p: published[d][p][name] for p in PROFILES} for d in ("numenta (HTM)", "ARTime", "null")}
    result: dict[str, Any] = {"name": name, "windows": labels.n_windows, "rows": labels.rows,
                              "trained": trained.ok, "error": trained.error, "scores": scores}
    refusal = agent_refusal(trained)
    if refusal:
        result["trained"], result["error"] = False, refusal
        never = scores_of(labels, np.zeros(labels.rows, bool), profiles)
        for key in rule_keys():
            scores[key] = never
        result["rate"] = {"days": 0.0, "episodes": 0, "observed": float("nan"), "planned": float("nan")}
        return result
    done = rule_runs(trained, frame, labels, work, profiles)
    runs, period = done.runs, done.period
    result["on_plan"], result["fixed_on"] = done.on_plan, done.fixed_on
    for key, replay in runs.items():
        scores[key] = scores_of(labels, replay.onsets, profiles)
    for key in (MAIN, STOCK):
        scores[f"{key}, every alerting reading"] = scores_of(labels, runs[key].alerting, profiles)
    result["losses"] = window_losses(labels, runs[MAIN], result["on_plan"].get("on", float("nan")))
    result["rate"] = rate(labels, runs[MAIN].onsets, period, runs[MAIN].planned_per_day)
    result["stock_rate"] = rate(labels, runs[STOCK].onsets, period, runs[STOCK].planned_per_day)
    return result


def campaign(root: Path, names: list[str], jobs: int, retrain: bool, train_args: list[str],
             work: Path = REPORTS, retry_refused: bool = False) -> list[dict[str, Any]]:
    profiles, windows = load_profiles(root), load_windows(root)
    published = {label: {p: published_scores(root, d, p) for p in PROFILES}
                 for label, d in (("numenta (HTM)", "numenta"), ("ARTime", "ARTime"), ("null", "null"))}
    trained = train_all(root, names, train_args, jobs, retrain, work / "models", retry_refused)
    return [one_file(root, n, trained[n], windows[n], profiles, published, work) for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training nab", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated substrings of file names (default: all files)")
    parser.add_argument("-j", "--jobs", type=whole(1), default=2, help="trainings at a time (default 2)")
    parser.add_argument("--retrain", action="store_true", help="ignore the models cached in WORK/models")
    parser.add_argument("--retry-refused", action="store_true", help="train again the files the CLI refused")
    parser.add_argument("--work", type=Path, default=REPORTS, help="models, scores and results.json (default "
                        "reports/nab)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the document the tables go into")
    parser.add_argument("--train-args", default="", help="extra CLI options for the autoencoder, e.g. '--epochs 30'")
    parser.add_argument("--no-doc", action="store_true", help="print the tables, leave docs/real-data.md alone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = nab_root()
    if root is None:
        raise SystemExit("the NAB copy is not found: set EDGEPIPE_NAB to its folder (the one with labels/, data/)")
    names = sorted(load_windows(root))
    if args.only:
        names = [n for n in names if any(part in n for part in args.only.split(","))]
    files = campaign(root, names, args.jobs, args.retrain, args.train_args.split(), args.work, args.retry_refused)
    results = {"files": files, "rule_keys": rule_keys(), "main_key": MAIN, "stock_key": STOCK,
               "tuned_categories": list(TUNED), "argv": " ".join(argv if argv is not None else sys.argv[1:]),
               "train_args": args.train_args}
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    text = nab_report.document(results, load_profiles(root))
    if not args.no_doc:
        nab_report.write_doc(args.doc, text)
    print(text)
    return 0
