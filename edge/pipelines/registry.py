"""The registry of pipeline kinds: what a kind declares, and where the agent finds it.

Each module or sub-package of `edge.pipelines` that defines `KIND = PipelineKind(...)` is a pipeline
kind: its config section (`[[camera]]`), the dataclass of one table, how to load its model(s), how to
build the pipeline, its Home Assistant entities, the `cmd/<action>`s it answers, the lines `edge
subscribe` prints for its messages and those `edge check` prints for a table. The config parser, the agent,
the command dispatcher, `edge check`, discovery and the watcher all iterate this registry, so a new kind is
one module or one package (plus its payload schema), as a detector plugin is in Frigate.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.models.loader import ModelLoader
from edge.mqtt.messages import Message, Topics

NOT_KINDS = {"base", "publisher", "registry"}


@dataclass(frozen=True, kw_only=True)
class Arguments:
    """What a command may carry. Each command declares its own as a subclass whose fields carry their
    constraints (`edge.fields.setting`); `edge.commands` builds it with `edge.fields.build` before the
    handler runs, so an unknown key, a wrong type or a value out of range is refused with the key named
    and nothing changes. `id` is every command's: the result echoes it as `request_id`."""

    id: Any = None


@dataclass(frozen=True)
class Command:
    """A kind's `cmd/<action>`: the handler gets the built `arguments` and the live pipelines of that kind and
    returns the result's fields (ValueError: refused, the result says why)."""

    handler: Callable[[Any, list[Any]], dict[str, Any]]
    arguments: type[Arguments] = Arguments


KindCommand = Command

#: `edge subscribe`: topic, raw payload, the payload as a JSON object (None if it is not one) -> a line, or
#: None when the message is not this kind's
Describe = Callable[[str, bytes, "dict[str, Any] | None"], "str | None"]


@dataclass(frozen=True)
class Wiring:
    """What a pipeline is built with besides its config and model."""

    publisher: Any  # edge.pipelines.publisher.Publisher
    queue_size: int
    loader: ModelLoader


@dataclass(frozen=True)
class PipelineKind:
    section: str  # the config's array of tables, `[[section]]`; also the pipeline's `kind`
    config: type  # dataclass of one table, constraints on its fields (edge.fields)
    load: Callable[[Any, ModelLoader], Any]  # config -> the model object `build` and `swap` take
    build: Callable[[Any, Any, Wiring], Any]  # config, model, wiring -> a Pipeline
    discovery: Callable[[str, Topics, str, Any], list[Message]]  # prefix, topics, device, table's config -> configs
    commands: dict[str, Command] = field(default_factory=dict)  # action -> handler + arguments (edge.commands)
    describe: Describe | None = None
    # `edge check`: config of one table, its model (what `load` gave), the state dir -> lines a person reads
    # (the sensor: which alert rule it runs and whether it burns in first); never changes a file
    preflight: Callable[[Any, Any, Path], list[str]] | None = None


def named(pipelines: list[Any], kind: str, name: Any) -> list[Any]:
    """The pipelines of a kind a command is for: the one named, or all of them (name None); ValueError
    naming those there are."""
    have = {p.name: p for p in pipelines}
    if name is None:
        return list(have.values())
    if name not in have:
        raise ValueError(f"no {kind} {name!r} (have {sorted(have)})")
    return [have[name]]


@functools.cache
def kinds() -> dict[str, PipelineKind]:
    """Every pipeline kind of this package (a module or a sub-package with `KIND`), by config section, in
    name order."""
    import edge.pipelines as package

    found = {}
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name in NOT_KINDS:
            continue
        kind = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "KIND", None)
        if isinstance(kind, PipelineKind):
            found[kind.section] = kind
    return found
