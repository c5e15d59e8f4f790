"""`edge/` never needs TensorFlow, Keras or scikit-learn: a Pi has only a TFLite runtime. Nor do the
repository tools or `fleet/`, the operator commands (keygen, bundle, ship) run from an edge-only venv."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.isolation import HOST_ONLY, no_tf_env

# TF-free: also run inside the emulated Pi images by `make pi-check` (`pytest -m edge`)
pytestmark = pytest.mark.edge


def imports_of(folder: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) for every import in a folder of the repository."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [(str(path.relative_to(ROOT)), node.lineno, n) for n in names]
    return found


@pytest.mark.parametrize("folder", ["edge", "tools", "fleet"])
def test_no_edge_tools_or_fleet_module_imports_host_libraries(folder: str) -> None:
    """The Pi's runtime, the repository tools (demo, bench) and the operator commands run without TensorFlow."""
    offenders = [f"{f}:{line} {n}" for f, line, n in imports_of(folder) if n.split(".")[0] in HOST_ONLY]
    if folder == "edge":  # the runtime shim may fall back to tensorflow.lite on a host, lazily
        offenders = [o for o in offenders if not o.startswith("edge/models/runtime.py:")]
    assert offenders == []


def test_edge_imports_nothing_from_tools_or_training() -> None:
    """`edge/` is what the installer copies to the Pi: it must not need the rest of the repository."""
    assert [f"{f}:{line} {n}" for f, line, n in imports_of("edge")
            if n.split(".")[0] in ("tools", "training", "fleet")] == []


def test_fleet_imports_nothing_from_tools_or_training() -> None:
    """`fleet/` needs only `edge` (the bundle format, the manifest): an edge-only venv runs it."""
    assert [f"{f}:{line} {n}" for f, line, n in imports_of("fleet") if n.split(".")[0] in ("tools", "training")] == []


@pytest.mark.parametrize("command", [["fleet", "keygen"], ["fleet", "bundle"], ["fleet", "ship"], ["fleet", "status"],
                                     ["fleet", "rollout"], ["training", "keygen"], ["training", "bundle"],
                                     ["training", "ship"]])
def test_operator_commands_run_without_tensorflow(command: list[str]) -> None:
    """`python -m fleet keygen|bundle|ship|status|rollout --help`, and the `python -m training` aliases, where
    TensorFlow cannot be imported: shipping models needs only the edge's dependencies."""
    result = subprocess.run([sys.executable, "-m", *command, "--help"], env=no_tf_env(), capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"python -m fleet {command[1]}" in result.stdout


#: the low rooms of edge/ (docs/DESIGN.md, "Where things are"), and all they may import of edge besides themselves
LOW_ROOMS = {"edge/alerts": (), "edge/models": ("edge.fileio", "edge.numbers"),
             "edge/mqtt": ("edge.fields", "edge.fileio"),  # fileio: the outbox sets a damaged file aside as state does
             "edge/homeassistant": ("edge.mqtt", "edge.fileio"), "edge/sources": ("edge.timestamps",)}
ABOVE_PIPELINES = ("edge.agent", "edge.cli", "edge.commands", "edge.config", "edge.health", "edge.preflight",
                   "edge.selftest", "edge.update", "edge.watch")


@pytest.mark.parametrize("room", sorted(LOW_ROOMS))
def test_a_low_room_imports_nothing_above_it(room: str) -> None:
    """The alerts wing and the models (which the trainer imports), the transport and Home Assistant know
    nothing of the pipelines, the agent or each other beyond what the design allows."""
    own = room.replace("/", ".")
    allowed = (own, *LOW_ROOMS[room])
    assert [f"{f}:{line} {n}" for f, line, n in imports_of(room)
            if n.startswith("edge") and not any(n == a or n.startswith(a + ".") for a in allowed)] == []


def test_no_pipeline_kind_imports_what_composes_it() -> None:
    assert [f"{f}:{line} {n}" for f, line, n in imports_of("edge/pipelines")
            if any(n == a or n.startswith(a + ".") for a in ABOVE_PIPELINES)] == []


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
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel, load_runtime
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
