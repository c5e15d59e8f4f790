"""The registry of training tasks, and the profiles.

Each module of `training.tasks` that defines `TASK = Task(...)` is a model the CLI trains: its
config dataclass, its value under each profile, its own options and its `run`. `python -m
training`, `--profile` and `get_config` are built from this registry, so a fifth model is one new
file, as a pipeline kind is on the edge (edge/pipelines/registry.py).

Profiles: `lecture` (the lecture's hyper-parameters and amount of training), `default` (what
`make models` uses: all four in about half an hour on 2 CPU cores) and `quick` (a few minutes in
all, for smoke runs). One dataclass per model keeps every knob visible, and the chosen config is
written into the manifest beside the model.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from typing import Any

from training.tasks.base import Task

PROFILES = {"lecture": "the lecture's training", "default": "`make models`", "quick": "smoke runs"}


@functools.cache
def tasks() -> dict[str, Task]:
    """Every task in this package by name, in training order (`Task.order`, then name)."""
    import training.tasks as package

    found = []
    for module in pkgutil.iter_modules(package.__path__):
        task = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "TASK", None)
        if isinstance(task, Task):
            check(task)
            found.append(task)
    return {t.name: t for t in sorted(found, key=lambda t: (t.order, t.name))}


def check(task: Task) -> None:
    """A task gives a config of its own type for every profile (a typo in a profile fails at start, not
    halfway through `make models`)."""
    missing = set(PROFILES) - set(task.profiles)
    if missing:
        raise TypeError(f"task {task.name!r} has no config for the profile(s) {', '.join(sorted(missing))}")
    wrong = [name for name, cfg in task.profiles.items() if not isinstance(cfg, task.config)]
    if wrong:
        raise TypeError(f"task {task.name!r}: the {', '.join(wrong)} profile's config is not a {task.config.__name__}")


def get_config(profile: str, model: str, **overrides: Any) -> Any:
    """The profile's config of one model, with CLI overrides (None values are ignored)."""
    base = tasks()[model].profiles[profile]
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **changes)
