"""What a task is: its declaration (`Task`, `Option`) and what its `run` hands back (`TaskResult`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.models.manifest import ModelEntry


@dataclass
class TaskResult:
    """What a task hands back to the CLI: the manifest entries of its files and the pictures it drew."""

    entries: list[ModelEntry]
    pictures: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Option:
    """A command-line option of one task; it sets the config field named like the flag (`--normal-rows`
    -> `normal_rows`). Unset, it is None and the profile's value stands."""

    flag: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False  # a flag without a value (store_true)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse._ActionsContainer) -> None:
        if self.switch:
            parser.add_argument(self.flag, action="store_true", default=None, help=self.help)
        else:
            parser.add_argument(self.flag, type=self.type, choices=self.choices, help=self.help)


#: run(config, out_dir, report_dir, profile name) -> TaskResult
Run = Callable[[Any, Path, Path, str], TaskResult]


@dataclass(frozen=True)
class Task:
    """One model the CLI trains: `python -m training <name>`.

    `config` is a dataclass with at least `dataset` and `epochs` (the options every task takes);
    `profiles` gives its value under each profile of `training.tasks.registry.PROFILES`; `options`
    are the task's own flags. `order` places it in `all`: a task that reads another's export (the
    GAN is judged by the CNN of the same folder) comes after it.
    """

    name: str
    config: type
    profiles: dict[str, Any]
    run: Run
    datasets: str  # what --dataset takes, for the help text
    options: tuple[Option, ...] = ()
    order: int = 100

    def misuse(self) -> str:
        """The error for this task's options given to another task (or to `all`)."""
        flags = [o.flag for o in self.options]
        named = flags[0] if len(flags) == 1 else ", ".join(flags[:-1]) + " and " + flags[-1]
        return f"{named} {'applies' if len(flags) == 1 else 'apply'} to the {self.name}"


def set_seed(seed: int) -> None:
    """Python, numpy and TensorFlow seeds in one call (Keras' own helper)."""
    import keras

    keras.utils.set_random_seed(seed)
