"""The loader that hands pipeline kinds verified models: one manifest read per load, every file checked.

One loader per load -- start-up, `cmd/reload`, or an update's verification -- so that a load reads
one manifest and fails before anything is swapped if any model is bad. Each model it loads is
verified (sha256 and size, tensors, task) and answers its golden vectors (`edge.models.golden`)
before a pipeline sees it.
"""

from __future__ import annotations

import collections
from pathlib import Path

from edge.models import golden
from edge.models.manifest import Manifest, ManifestError, ModelEntry, read_manifest
from edge.models.runtime import Runtime, TFLiteModel, load_runtime


class ModelLoader:
    """Reads the manifest once and loads each model it is asked for, verified and golden-checked."""

    def __init__(self, models_dir: Path | str, state_dir: Path | str, num_threads: int = 1,
                 runtime: Runtime | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.state_dir = Path(state_dir)
        self.num_threads = num_threads
        self.manifest: Manifest = read_manifest(self.models_dir / "manifest.json")
        self.runtime = runtime or load_runtime()
        self.loads: collections.Counter[str] = collections.Counter()  # model name -> interpreters made

    def load(self, model_name: str, task: str, who: str) -> tuple[ModelEntry, TFLiteModel]:
        """The manifest entry and a loaded interpreter; ManifestError names `who` on a task mismatch."""
        entry = self.manifest.get(model_name)
        if entry.task != task:
            raise ManifestError(f"{who}: model {model_name!r} is a {entry.task!r} model, expected {task!r}")
        model = TFLiteModel.from_entry(entry, self.models_dir, num_threads=self.num_threads, runtime=self.runtime)
        self.loads[model_name] += 1
        golden.check(model, entry)  # the file must answer its golden vectors as it did at export
        return entry, model
