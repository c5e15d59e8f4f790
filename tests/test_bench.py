"""`python -m tools.bench` on a Pi-like Python: every model gets a row with its own MAC count and metric,
the agent section is filled in. Speed itself is not asserted here (it is pasted into docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from tests.conftest import MODELS_DIR, ROOT, requires_package
from tests.helpers.isolation import no_tf_env
from training.tflite import count_macs


@requires_package("mosquitto")  # the agent section runs one
def test_bench_tables_cover_every_model_and_the_agent(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    result = subprocess.run([sys.executable, "-m", "tools.bench", "--models-dir", str(MODELS_DIR), "--invokes", "20",
                             "--frames", "300", "--camera-runs", "2", "--readings", "100", "--out", str(out)],
                            env=no_tf_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "- runtime: ai_edge_litert" in text and "- cores: " in text
    manifest = read_manifest(MODELS_DIR / "manifest.json")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for name, entry in manifest.models.items():
        macs = count_macs(TFLiteModel.from_entry(entry, MODELS_DIR).interpreter)
        assert f"| {macs:,} |" in rows[name], name
    assert "graph fixed to batch 1" in rows["cnn"] and "graph fixed to batch 1" in rows["lstm"]
    # the conditional generator's reshape and transposed convolutions have constant shapes too;
    # the autoencoder's dense layers take a batch of readings
    assert "graph fixed to batch 1" in rows["gan"] and "graph fixed to batch 1" not in rows["autoencoder"]
    cnn_macs = count_macs(TFLiteModel.from_entry(manifest.get("cnn"), MODELS_DIR).interpreter)
    assert cnn_macs > 1_000_000
    for figure in ("camera pipeline, replay source", "reading publish -> alert arrival", "forecasts",
                   "start-up to the first message", "resident memory"):
        assert figure in text
    assert "nan" not in text.split("## The agent end to end")[1]
    assert "median of 2 runs" in text  # the camera's rate from two agents, median and range


def test_make_bench_keeps_the_sections_other_benchmarks_wrote(tmp_path: Path) -> None:
    """`make bench` rewrote docs/benchmarks.md whole and dropped the fleet's and the brokers' sections."""
    from tools.bench import kept_sections

    out = tmp_path / "benchmarks.md"
    out.write_text("# edgepipe benchmarks\n\n## Models\nold rows\n\n## Fleet\nfleet rows\n\n## Brokers\nbroker rows\n")
    kept = kept_sections(out, "## Models\nnew rows\n")
    assert "fleet rows" in kept and "broker rows" in kept and "old rows" not in kept
