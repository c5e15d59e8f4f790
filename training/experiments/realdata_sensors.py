"""`python -m training realdata sensors`: the autoencoder recipe on real recordings it was never tuned on.

Real series bundled with PyPI packages (no download at run time): hourly air temperatures of two
cities for 2010 (vega_datasets), the weekly Mauna Loa CO2 record and monthly El Nino sea surface
temperatures (statsmodels). Each is a `timestamp,value` CSV; the first `NORMAL_SHARE` is the normal
period; the rest gets faults injected at known rows (`training.datasets.faults`: spikes, level shifts,
drift, stuck sensor, noise bursts). The model is trained with the project's CLI, its quantized file
replayed over the whole stream, and the table in docs/real-data.md (between the sensors markers)
rewritten: faults found, false-alert episodes per day outside the faults, the calibration's
expected rate, and the old default (one reading per input, p99 threshold, 2-of-3) beside it.
Not part of `make test` (minutes of training).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.alerts.calibration import AlertPlan, rule_statistic
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.models.sensor_window import model_inputs
from edge.timestamps import to_seconds
from training.argtypes import rate
from training.cli import main as train
from training.datasets.faults import KINDS, Fault, Spread, faulty_rows, inject
from training.paths import PROJECT_ROOT
from training.quality.docblock import replace_block
from training.tflite import run_batch

log = logging.getLogger("training.realdata")
NORMAL_SHARE = 0.3
FAULTS_PER_KIND = 2
DOC = PROJECT_ROOT / "docs" / "real-data.md"
BEGIN, END = "<!-- sensors:begin -->", "<!-- sensors:end -->"


@dataclass
class Stream:
    name: str
    why: str
    times: list[str]
    values: np.ndarray
    unit: str


def _iso(moment: object) -> str:
    return str(moment).replace("T", " ")[:19]


def streams() -> list[Stream]:
    """The real recordings, each with the reason it is here."""
    try:
        from statsmodels.datasets import co2, elnino
        from vega_datasets import local_data
    except ImportError as exc:
        raise SystemExit(f"{exc.name} is missing: pip install -e '.[realdata]'") from None

    out = []
    for name, loader in (("seattle-temps", local_data.seattle_temps), ("sf-temps", local_data.sf_temps)):
        df = loader()
        out.append(Stream(name, "hourly air temperature, 2010: a daily cycle and a seasonal drift, like a "
                          "machine-room or ambient sensor", [_iso(t) for t in df["date"]],
                          df["temp"].to_numpy(np.float64), "°F"))
    df = co2.load_pandas().data.interpolate()
    out.append(Stream("co2-weekly", "weekly CO2 at Mauna Loa 1958-2001: a trend that leaves the training range, "
                      "a slow sensor", [_iso(t) for t in df.index], df["co2"].to_numpy(np.float64), "ppm"))
    df = elnino.load_pandas().data
    months = [(int(y), m) for y in df["YEAR"] for m in range(1, 13)]
    values = df.drop(columns="YEAR").to_numpy(np.float64).reshape(-1)
    out.append(Stream("elnino-monthly", "monthly sea surface temperature 1950-2010: irregular multi-year "
                      "swings, few readings", [f"{y:04d}-{m:02d}-01 00:00:00" for y, m in months], values, "°C"))
    return out


def faulted(stream: Stream, normal: int, seed: int) -> tuple[np.ndarray, list[Fault]]:
    """The stream with FAULTS_PER_KIND faults of each kind at random rows after the normal period."""
    rng = np.random.default_rng(seed)
    values = stream.values[:, None].astype(np.float32)
    spread = Spread.of(values[:normal])
    tail = len(values) - normal
    length = max(4, min(48, tail // 60))
    slots = rng.permutation(np.arange(normal + length, len(values) - 2 * length, 3 * length))
    faults = [Fault(kind, int(s), int(s) + length, 0)
              for kind, s in zip([k for k in KINDS for _ in range(FAULTS_PER_KIND)], slots)]
    for fault in faults:
        values = inject(values, fault, spread, rng)
    return values, sorted(faults, key=lambda f: f.start)


def replay(models: Path, values: np.ndarray, seconds: np.ndarray) -> tuple[np.ndarray, AlertPlan, dict]:
    """The quantized file over the whole stream: the rule's statistic at every reading."""
    entry = read_manifest(models / "manifest.json").get("autoencoder")
    plan = AlertPlan.from_json(entry.postprocess["alerts"])
    stat = rule_statistic(np.nan_to_num(_raw_scores(models, values, seconds), nan=-np.inf), plan.k, plan.n)
    return stat, plan, entry.training


def judge(active: np.ndarray, faults: list[Fault], normal: int, grace: int) -> tuple[int, int, int, float]:
    """(faults found, false episodes, readings outside faults, share of them alerting) after the normal period."""
    inside = np.zeros(len(active), bool)
    found = 0
    for f in faults:
        rows = faulty_rows(f)
        span = np.arange(rows[0], min(len(active), rows[-1] + 1 + grace))
        inside[span] = True
        found += bool(active[span].any())
    onsets = np.flatnonzero(active & ~np.concatenate([[False], active[:-1]]))
    false = int(np.sum((onsets >= normal) & ~inside[onsets]))
    clean = ~inside[normal:]
    return found, false, int(np.sum(clean)), float(np.mean(active[normal:][clean]))


def run_stream(stream: Stream, work: Path, seed: int, extra: list[str]) -> dict:
    normal = int(len(stream.values) * NORMAL_SHARE)
    values, faults = faulted(stream, normal, seed)
    csv = work / f"{stream.name}.csv"
    csv.write_text("timestamp,value\n" + "\n".join(f"{t},{v:.6g}" for t, v in zip(stream.times, values[:, 0])) + "\n")
    seconds = np.array([to_seconds(t) for t in stream.times])
    period = float(np.median(np.diff(seconds)))
    days = (len(values) - normal) * period / 86400
    rows = {}
    recipes = {"new default": [*extra], "new, --window-norm mean": [*extra, "--window-norm", "mean"],
               "old default (W=1, p99, 2-of-3)": ["--window", "1"]}
    for label, flags in recipes.items():
        out = work / f"{stream.name}-{len(rows)}"
        code = train(["autoencoder", "--dataset", f"{csv}:value", "--normal-rows", str(normal), "--out", str(out),
                      "--report", str(out / "report"), *flags])
        if code != 0:
            raise SystemExit(f"training on {stream.name} failed ({code})")
        stat, plan, training = replay(out, values, seconds)
        if label.startswith("old"):  # the old rule: p99 of the held-out normal scores, 2-of-3
            scores = _raw_scores(out, values, seconds)
            threshold = float(np.nanpercentile(scores[normal - int(normal * 0.2):normal], 99))
            active = rule_statistic(np.nan_to_num(scores, nan=-np.inf), 2, 3) > threshold
            expected = None
        else:
            active, expected = stat > plan.threshold, plan.expected_per_day
        found, false, clean, share = judge(active, faults, normal, grace=training["window"] + plan.n)
        rows[label] = {"window": training["window"], "found": found, "faults": len(faults),
                       "false_episodes": false, "false_per_day": false / (clean * period / 86400),
                       "clean_alerting": share,
                       "expected_per_day": expected, "k": plan.k if expected is not None else 2,
                       "n": plan.n if expected is not None else 3, "method": plan.method}
    return {"name": stream.name, "why": stream.why, "readings": len(values), "normal": normal, "period_s": period,
            "days_tested": days, "unit": stream.unit, "recipes": rows}


def _raw_scores(models: Path, values: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    entry = read_manifest(models / "manifest.json").get("autoencoder")
    model = TFLiteModel.from_entry(entry, models)
    x = model_inputs(values, seconds, entry.preprocess)
    out = run_batch(model, "reading", x)["reconstruction"]
    return np.concatenate([np.full(len(values) - len(x), np.nan), np.mean((out - x) ** 2, axis=1)])


def table(results: list[dict], target: float) -> str:
    lines = [f"Target: {target:g} false alerts per day (`--false-alarms-per-day`, the default). "
             f"Normal period: the first {NORMAL_SHARE:.0%} of each recording; after it, {FAULTS_PER_KIND} faults of "
             f"each kind ({', '.join(KINDS)}) injected at random rows. Generated {datetime.date.today()} by "
             "`python -m training realdata sensors`.", "",
             "| dataset | readings (period) | days replayed | recipe | W | rule | faults found | false-alert "
             "episodes observed | expected/day | fault-free readings alerting |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        period = f"{r['period_s'] / 3600:g} h" if r["period_s"] < 86400 else f"{r['period_s'] / 86400:g} d"
        for label, row in r["recipes"].items():
            expected = f"{row['expected_per_day']:.3g}" if row["expected_per_day"] is not None else "—"
            lines.append(f"| {r['name']} | {r['readings']} ({period}) | {r['days_tested']:.0f} | {label} | "
                         f"{row['window']} | {row['k']}-of-{row['n']} | {row['found']}/{row['faults']} | "
                         f"{row['false_episodes']} ({row['false_per_day']:.3g}/day) | {expected} | "
                         f"{_pct(row.get('clean_alerting'))} |")
    lines += ["", "Why these recordings:", ""] + [f"- **{r['name']}** ({r['unit']}): {r['why']}." for r in results]
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "—"


def write_doc(text: str) -> None:
    replace_block(DOC, BEGIN, END, text, "Sensors (autoencoder)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training realdata", description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", choices=["sensors"], default="sensors")
    parser.add_argument("--only", help="comma-separated dataset names")
    parser.add_argument("--false-alarms-per-day", type=rate(), default=None)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--no-doc", action="store_true", help="print the table, leave docs/real-data.md alone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    extra = ["--false-alarms-per-day", str(args.false_alarms_per_day)] if args.false_alarms_per_day else []
    chosen = [s for s in streams() if not args.only or s.name in args.only.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for stream in chosen:  # the table is rewritten after each recording
            results.append(run_stream(stream, Path(tmp), seed=zlib.crc32(stream.name.encode()), extra=extra))
            text = table(results, args.false_alarms_per_day or 0.1)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
            if not args.no_doc:
                write_doc(text)
    print(text)
    return 0


if __name__ == "__main__":
    from training.guard import guarded  # the CLI's error handling, run directly too

    sys.exit(guarded(main, sys.argv[1:]))
