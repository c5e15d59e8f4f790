"""The registry of pipeline kinds, and the loader that hands them verified models.

Each module of `edge.pipelines` that defines `KIND = PipelineKind(...)` is a pipeline kind:
its config section (`[[camera]]`), the dataclass of one table, how to load its model(s),
how to build the pipeline, and its Home Assistant entities. The config parser, the agent,
`edge check` and discovery all iterate this registry, so a new kind is one new file (plus
its payload schema), as a detector plugin is in Frigate.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import golden
from edge.manifest import Manifest, ManifestError, ModelEntry, read_manifest
from edge.mqtt.messages import Message, Topics
from edge.runtime import Runtime, TFLiteModel, load_runtime

NOT_KINDS = {"base", "registry"}


class ModelLoader:
    """Reads the manifest once and loads each model it is asked for, verified (sha256, tensors, task).

    One loader per load -- start-up or `cmd/reload` -- so that a reload reads one manifest and
    fails before anything is swapped if any model is bad.
    """

    def __init__(self, models_dir: Path | str, state_dir: Path | str, num_threads: int = 1,
                 runtime: Runtime | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.state_dir = Path(state_dir)
        self.num_threads = num_threads
        self.manifest: Manifest = read_manifest(self.models_dir / "manifest.json")
        self.runtime = runtime or load_runtime()

    def load(self, model_name: str, task: str, who: str) -> tuple[ModelEntry, TFLiteModel]:
        """The manifest entry and a loaded interpreter; ManifestError names `who` on a task mismatch."""
        entry = self.manifest.get(model_name)
        if entry.task != task:
            raise ManifestError(f"{who}: model {model_name!r} is a {entry.task!r} model, expected {task!r}")
        model = TFLiteModel.from_entry(entry, self.models_dir, num_threads=self.num_threads, runtime=self.runtime)
        golden.check(model, entry)  # the file must answer its golden vectors as it did at export
        return entry, model


@dataclass(frozen=True)
class Wiring:
    """What a pipeline is built with besides its config and model."""

    publisher: Any  # edge.pipelines.base.Publisher
    queue_size: int
    loader: ModelLoader


@dataclass(frozen=True)
class PipelineKind:
    section: str  # the config's array of tables, `[[section]]`; also the pipeline's `kind`
    config: type  # dataclass of one table, constraints on its fields (edge.fields)
    load: Callable[[Any, ModelLoader], Any]  # config -> the model object `build` and `swap` take
    build: Callable[[Any, Any, Wiring], Any]  # config, model, wiring -> a Pipeline
    discovery: Callable[[str, Topics, str, Any], list[Message]]  # prefix, topics, device, table's config -> configs


@functools.cache
def kinds() -> dict[str, PipelineKind]:
    """Every pipeline kind in this package, by config section, in module-name order."""
    import edge.pipelines as package

    found = {}
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name in NOT_KINDS:
            continue
        kind = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "KIND", None)
        if isinstance(kind, PipelineKind):
            found[kind.section] = kind
    return found
