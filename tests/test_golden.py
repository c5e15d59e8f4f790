"""Issue 16 item 1: golden vectors in the manifest, re-run at load; a file that answers differently is refused.

The modified file here has its sha256 and size recomputed in the manifest (what a hand edit, or
a corruption "fixed" by re-hashing, looks like): only the golden vectors can tell.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.models import golden
from edge.models.loader import ModelLoader
from edge.models.manifest import ManifestError, read_manifest, sha256_file
from edge.models.runtime import TFLiteModel
from tests.conftest import MODELS_DIR, ROOT


def test_every_committed_model_carries_golden_vectors_and_answers_them_exactly() -> None:
    manifest = read_manifest(MODELS_DIR / "manifest.json")
    for entry in manifest.models.values():
        result = golden.verify(TFLiteModel.from_entry(entry, MODELS_DIR), entry)
        assert result.ok, result.reason
        assert result.vectors >= 2
        assert result.max_abs_diff <= result.atol


def weight_offset(path: Path, entry_name: str) -> tuple[int, int]:
    """Where the largest int8 weight tensor of the file sits (offset, length), found from the interpreter."""
    manifest = read_manifest(path.parent / "manifest.json")
    model = TFLiteModel.from_entry(manifest.get(entry_name), path.parent)
    data, best = path.read_bytes(), (0, 0)
    for detail in model.interpreter.get_tensor_details():
        try:
            raw = model.interpreter.get_tensor(detail["index"]).tobytes()
        except ValueError:
            continue
        if detail["dtype"] == np.int8 and len(raw) > best[1] and data.count(raw) == 1:
            best = (data.find(raw), len(raw))
    assert best[1] > 0
    return best


def rehashed_copy(tmp_path: Path, name: str, change: int) -> Path:
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models)
    path = models / f"{name}.tflite"
    offset, length = weight_offset(path, name)
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + length):
        data[i] = (data[i] + change) % 256
    path.write_bytes(bytes(data))
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["models"][name]["sha256"] = sha256_file(path)
    (models / "manifest.json").write_text(json.dumps(manifest))
    return models


@pytest.mark.parametrize("name", ["autoencoder", "cnn"])
def test_a_modified_file_with_its_hash_recomputed_is_refused_at_load_naming_the_mismatch(tmp_path: Path,
                                                                                          name: str) -> None:
    models = rehashed_copy(tmp_path, name, change=37)
    loader = ModelLoader(models, tmp_path / "state")
    task = loader.manifest.get(name).task
    with pytest.raises(ManifestError, match=r"golden_mismatch: model '" + name + r"' gives outputs up to .*tolerance"):
        loader.load(name, task, "test")


def test_an_entry_without_vectors_still_loads_and_a_malformed_one_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models)
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["models"]["autoencoder"].pop("golden")
    manifest["models"]["lstm"]["golden"]["vectors"][0]["inputs"]["x"] = "AAAA"  # 3 bytes, the tensor needs 26
    (models / "manifest.json").write_text(json.dumps(manifest))
    loader = ModelLoader(models, tmp_path / "state")
    loader.load("autoencoder", "anomaly", "test")
    with pytest.raises(ManifestError, match=r"golden.vectors\[0\].inputs.x: 3 bytes, tensor 'x' needs 26"):
        loader.load("lstm", "forecast", "test")


@pytest.mark.parametrize("shift, where, ok", [
    (20, "one", True),  # one output off by about what a faithful runtime may show (tflite-runtime 2.14: 23)
    (49, "one", False),  # ... and one step more than the largest bound (48)
    (3, "all", False),  # every output of one vector off by 3 steps: the mean (1.5 of 2 vectors, bound 1) tells
])
def test_outputs_beyond_either_bound_are_refused_and_within_both_accepted(shift: int, where: str, ok: bool) -> None:
    manifest = read_manifest(MODELS_DIR / "manifest.json")
    entry = manifest.get("cnn")
    assert (entry.golden["atol"], entry.golden["mean_atol"]) == (48.0, 1.0)
    model = TFLiteModel.from_entry(entry, MODELS_DIR)
    spec = entry.outputs[0]
    want = golden.decode(entry.golden["vectors"][0]["outputs"][spec.name], spec, "t").astype(np.int16)
    shifted = want.copy()
    if where == "one":
        shifted.flat[0] += shift if want.flat[0] + shift <= 127 else -shift
    else:
        shifted += np.where(want + shift <= 127, shift, -shift).astype(np.int16)
    entry.golden["vectors"][0]["outputs"][spec.name] = golden.encode(shifted.astype(np.int8))
    result = golden.verify(model, entry)
    assert result.ok is ok, result


VENV_214 = ROOT / ".venv-tflite214" / "bin" / "python"


@pytest.mark.skipif(not VENV_214.exists(), reason="no .venv-tflite214 (`make venv-tflite`)")
def test_the_committed_models_pass_their_golden_vectors_in_tflite_runtime_214() -> None:
    """The older runtime of Pi images rounds some kernels differently: within the tolerance, never refused."""
    script = ("import json; from edge.models import golden; from edge.models.manifest import read_manifest; "
              "from edge.models.runtime import TFLiteModel, load_runtime; rt = load_runtime(); "
              f"m = read_manifest({str(MODELS_DIR / 'manifest.json')!r}); "
              f"print(json.dumps([golden.verify(TFLiteModel.from_entry(e, {str(MODELS_DIR)!r}, runtime=rt), e)"
              ".to_json() for e in m.models.values()] + [rt.name + ' ' + rt.version]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEPIPE_RUNTIME": "tflite_runtime"}
    result = subprocess.run([str(VENV_214), "-c", script], env=env, capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    *results, runtime = json.loads(result.stdout.strip().splitlines()[-1])
    assert runtime.startswith("tflite_runtime 2.14")
    assert [r for r in results if not r["ok"]] == []
    assert max(r["max_abs_diff"] for r in results if r["model"] == "gan") > 0  # it does round differently
