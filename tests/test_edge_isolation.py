"""`edge/` never needs TensorFlow, Keras or scikit-learn: a Pi has only a TFLite runtime."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MODELS_DIR, ROOT

NO_TF_SITE = Path(__file__).parent / "no_tf_site"
HOST_ONLY = {"tensorflow", "keras", "tf_keras", "sklearn"}

# TF-free: also run inside the emulated Pi images by `make pi-check` (`pytest -m edge`)
pytestmark = pytest.mark.edge


def no_tf_env() -> dict[str, str]:
    """Environment for a subprocess in which importing the host-only libraries fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(NO_TF_SITE), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_no_edge_module_imports_host_libraries() -> None:
    offenders = []
    for path in sorted((ROOT / "edge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in HOST_ONLY]
    assert offenders == []


def test_the_blocker_really_blocks() -> None:
    result = subprocess.run([sys.executable, "-c", "import tensorflow"], env=no_tf_env(), capture_output=True,
                            text=True)
    assert result.returncode != 0 and "tensorflow is blocked" in result.stderr


def test_edge_runs_every_committed_model_without_tensorflow() -> None:
    script = f"""
import importlib, json, pkgutil, numpy as np, edge
for mod in pkgutil.walk_packages(edge.__path__, "edge."):
    if mod.name != "edge.__main__":
        importlib.import_module(mod.name)
from edge.manifest import read_manifest
from edge.runtime import TFLiteModel, load_runtime
manifest = read_manifest({str(MODELS_DIR / 'manifest.json')!r})
out = {{"runtime": load_runtime().name}}
for name, entry in manifest.models.items():
    model = TFLiteModel.from_entry(entry, {str(MODELS_DIR)!r})
    result = model.run({{t.name: np.zeros(t.shape, np.float32) for t in entry.inputs}})
    out[name] = {{k: bool(np.all(np.isfinite(v))) for k, v in result.items()}}
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", script], env=no_tf_env(), capture_output=True, text=True,
                            cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out.pop("runtime") == "ai_edge_litert"
    assert set(out) >= {"cnn", "autoencoder", "gan", "lstm", "cnn_float32"}
    assert all(all(v.values()) for v in out.values())
