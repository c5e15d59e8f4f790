"""`python -m training nab` end to end on a small subset (the full run is `make nab`): trained through the CLI,
every row through the agent's scorer and rules, NAB-scored, written into a document. Also the "no detector"
path: a manifest the agent would refuse is recorded with the agent's reason, scored as never alerting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.quality.nab_score import nab_root

ROOT = nab_root()
pytestmark = pytest.mark.skipif(ROOT is None, reason="the NAB copy (../shared/nab or $EDGEPIPE_NAB) is not here")
REPO = Path(__file__).resolve().parents[1]


def test_campaign_on_a_subset(tmp_path: Path) -> None:
    doc = tmp_path / "real-data.md"
    doc.write_text("# Real data\n\nhand-written text\n")
    cmd = [sys.executable, "-m", "training", "nab", "--only", "speed_7578", "--work", str(tmp_path / "work"),
           "--doc", str(doc), "--train-args", "--epochs 5", "-j", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEPIPE_NAB": str(ROOT)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    (speed,) = results["files"]
    assert speed["trained"] and speed["windows"] == 4
    assert set(speed["scores"]) >= set(results["rule_keys"])
    # the published numenta score of this file, as NAB's table has it
    assert speed["scores"]["numenta (HTM), published"]["standard"] == pytest.approx(3.19572468045)
    rate = speed["rate"]
    assert rate["planned"] == 0.1 and rate["days"] > 3 and rate["observed"] == rate["episodes"] / rate["days"]
    text = doc.read_text()
    assert "hand-written text" in text and "<!-- nab:begin -->" in text and "speed_7578" in text
    assert "episode rule: full, every alerting reading" in text
    # where the score is lost: one entry per scored window; a detected window saw a surprise at `on` (the
    # surprise recorded is the one the rule judged, row for row); the label-tuned levels all scored
    losses = speed["losses"]
    assert len(losses) == 4 and all(w["best_surprise"] >= w["on"] for w in losses if w["detected"])
    assert all(not w["near"] for w in losses if w["detected"] or w["best_surprise"] < w["on"] - 0.5)
    assert sorted(speed["fixed_on"], key=float) == [f"{lv:g}" for lv in (2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5,
                                                                       3.75, 4.0)]
    assert "**Where the score is lost.**" in text and "as NAB does for the detectors it publishes" in text
