"""The models of the NAB campaign: the autoencoder trained through the project's CLI on each file's
probationary rows (NAB's rule: the first 15%, at most 750), cached per file under reports/nab/models/.

Why a cache: training is the slow part (tens of seconds per file); the rule and the scoring change often, and
must re-run in minutes. A file's model is reused while its manifest and the training log say it was made with
the same command; `--retrain` forces it. A file the CLI refuses (exit != 0) is recorded with the CLI's last
words and the campaign goes on.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training.paths import PROJECT_ROOT
from training.quality.nab_score import probation_rows

log = logging.getLogger("training.nab")
CACHE = PROJECT_ROOT / "reports" / "nab" / "models"


@dataclass(frozen=True)
class Trained:
    """One file's training outcome: its models folder, or the CLI's refusal."""

    name: str
    models: Path
    ok: bool
    error: str = ""


def file_key(name: str) -> str:
    return name.replace("/", "__").removesuffix(".csv")


def command(root: Path, name: str, out: Path, extra: list[str]) -> list[str]:
    rows = len(pd.read_csv(root / "data" / name, usecols=[0]))
    return [sys.executable, "-m", "training", "autoencoder", "--dataset", f"{root / 'data' / name}:value",
            "--normal-rows", str(probation_rows(rows)), "--out", str(out), "--report", str(out / "report"), *extra]


def train_one(root: Path, name: str, extra: list[str], retrain: bool, cache: Path = CACHE,
              retry_refused: bool = False) -> Trained:
    out = cache / file_key(name)
    cmd = command(root, name, out, extra)
    stamp = out / "command.json"
    if not retrain and stamp.exists() and json.loads(stamp.read_text())["command"] == cmd[1:]:
        outcome = json.loads(stamp.read_text())
        if outcome["ok"] or not retry_refused:
            return Trained(name, out, outcome["ok"], outcome.get("error", ""))
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}  # one core per training: jobs share the rest
    done = subprocess.run(["nice", "-n", "10", *cmd], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          check=False)
    (out / "train.log").write_text(done.stdout + done.stderr)
    ok = done.returncode == 0 and (out / "manifest.json").exists()
    error = "" if ok else (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:300]
    stamp.write_text(json.dumps({"command": cmd[1:], "ok": ok, "error": error}))
    log.info("%s: %s", name, "trained" if ok else f"refused: {error}")
    return Trained(name, out, ok, error)


def train_all(root: Path, names: list[str], extra: list[str], jobs: int, retrain: bool,
              cache: Path = CACHE, retry_refused: bool = False) -> dict[str, Trained]:
    """Every file's model, `jobs` CLI runs at a time."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = pool.map(lambda n: train_one(root, n, extra, retrain, cache, retry_refused), names)
        return {t.name: t for t in done}
