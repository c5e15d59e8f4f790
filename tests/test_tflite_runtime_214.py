"""The int8 models also load in tflite-runtime 2.14 (older Pi images; needs numpy<2).

`make test` builds `.venv-tflite214` with `make venv-tflite` (Python <= 3.11 only: tflite-runtime
has no newer wheels); the models run there through the same `edge.models.runtime` code and must
give the same outputs as ai-edge-litert.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from tests.conftest import MODELS_DIR, ROOT

VENV_PYTHON = ROOT / ".venv-tflite214" / "bin" / "python"
MANIFEST = read_manifest(MODELS_DIR / "manifest.json")
MODELS = ["cnn", "autoencoder", "gan", "lstm"]


def feeds_for(name: str) -> dict[str, list]:
    rng = np.random.default_rng(3)
    if name == "gan":  # the generator's own inputs: normal noise and, if it takes one, a one-hot class
        entry = MANIFEST.models[name]
        label = entry.preprocess.get("label_input")
        return {t.name: (np.eye(t.shape[-1])[[3]] if t.name == label else rng.normal(size=t.shape))
                .astype(np.float32).tolist() for t in entry.inputs}
    return {t.name: rng.uniform(0, 1, t.shape).astype(np.float32).tolist() for t in MANIFEST.models[name].inputs}


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="no .venv-tflite214: `make venv-tflite` failed or was not run "
                    "(tflite-runtime 2.14 has wheels for Python <= 3.11 only)")
def test_int8_models_give_the_same_outputs_in_tflite_runtime_214() -> None:
    script = f"""
import json, numpy as np
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel, load_runtime
manifest = read_manifest({str(MODELS_DIR / 'manifest.json')!r})
feeds = json.loads({json.dumps({m: feeds_for(m) for m in MODELS})!r})
rt = load_runtime()
out = {{"runtime": rt.name, "version": rt.version, "numpy": np.__version__}}
for name, f in feeds.items():
    model = TFLiteModel.from_entry(manifest.get(name), {str(MODELS_DIR)!r})
    out[name] = {{k: v.tolist() for k, v in model.run({{k: np.array(v, np.float32) for k, v in f.items()}}).items()}}
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEPIPE_RUNTIME": "tflite_runtime"}
    result = subprocess.run([str(VENV_PYTHON), "-c", script], env=env, capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["runtime"] == "tflite_runtime" and out["version"].startswith("2.14")
    assert out["numpy"].startswith("1.")
    for name in MODELS:
        ours = TFLiteModel.from_entry(MANIFEST.get(name), MODELS_DIR).run(
            {k: np.array(v, np.float32) for k, v in feeds_for(name).items()})
        for key, value in ours.items():
            theirs = np.array(out[name][key], np.float32)
            spec = MANIFEST.get(name).output(key)
            if name == "cnn":  # int8 convolutions: bit for bit
                assert np.array_equal(theirs, value), (name, key)
            elif spec.dtype == "int16":  # int16x8 kernels round slightly differently: a few int16 steps
                assert np.max(np.abs(theirs - value)) <= 4 * spec.scale + 1e-9, (name, key)
            else:
                # the generator's int8 kernels give other roundings in 2.14: its pixels differ by about 4
                # quantization steps on average (0.03 on the [-1, 1] scale, 4 of 255 grey levels), the
                # same picture; bounded here at 6 grey levels
                assert np.mean(np.abs(theirs - value)) <= 0.05
                assert np.corrcoef(theirs.ravel(), value.ravel())[0, 1] > 0.98
