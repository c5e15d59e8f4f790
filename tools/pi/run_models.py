"""Run every committed model once on fixed random inputs and print the outputs as one JSON line.

pi-check runs it in the image (ai-edge-litert on arm64, and tflite-runtime 2.14 on bookworm) and on the
host (x86-64): the outputs are compared, so "the models run there" means "and give the same numbers".
Needs only numpy and edge (no TensorFlow); EDGEPIPE_RUNTIME picks the runtime.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel, load_runtime

MARK = "MODELS-JSON "


def outputs(models_dir: Path) -> dict:
    manifest = read_manifest(models_dir / "manifest.json")
    runtime = load_runtime()
    rng = np.random.default_rng(0)
    result: dict = {"runtime": runtime.name, "version": runtime.version, "numpy": np.__version__, "outputs": {}}
    for name in sorted(manifest.models):
        entry = manifest.models[name]
        feeds = {t.name: rng.uniform(0, 1, t.shape).astype(np.float32) for t in entry.inputs}
        model = TFLiteModel.from_entry(entry, models_dir)
        result["outputs"][name] = {k: np.asarray(v, np.float64).ravel().tolist() for k, v in model.run(feeds).items()}
    return result


def largest_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two runs' outputs (inf when they hold different tensors)."""
    if a["outputs"].keys() != b["outputs"].keys():
        return float("inf")
    worst = 0.0
    for name, tensors in a["outputs"].items():
        for key, values in tensors.items():
            other = b["outputs"][name].get(key)
            if other is None or len(other) != len(values):
                return float("inf")
            worst = max(worst, float(np.max(np.abs(np.array(values) - np.array(other)))))
    return worst


def differences(a: dict, b: dict) -> dict[str, tuple[float, int, int]]:
    """Per model: the largest absolute difference, how many values differ, out of how many."""
    result = {}
    for name, tensors in a["outputs"].items():
        x = np.concatenate([np.array(v) for _, v in sorted(tensors.items())])
        y = np.concatenate([np.array(v) for _, v in sorted(b["outputs"].get(name, {}).items())] or [np.array([])])
        diff = np.abs(x - y) if x.shape == y.shape else np.full(x.shape, np.inf)
        result[name] = (float(diff.max(initial=0.0)), int((diff > 0).sum()), int(x.size))
    return result


def parse(output: str) -> dict:
    line = next((x for x in reversed(output.splitlines()) if x.startswith(MARK)), None)
    if line is None:
        raise ValueError(f"no {MARK.strip()} line in: {output[-500:]}")
    return json.loads(line[len(MARK):])


if __name__ == "__main__":
    print(MARK + json.dumps(outputs(Path(sys.argv[1]))))
