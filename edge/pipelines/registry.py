"""The registry of pipeline kinds.

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
from typing import Any

from edge.models.loader import ModelLoader
from edge.mqtt.messages import Message, Topics

NOT_KINDS = {"base", "publisher", "registry"}


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
