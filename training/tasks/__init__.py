"""One module per model: load data, train, evaluate, export and verify, draw the report pictures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.models.manifest import ModelEntry


@dataclass
class TaskResult:
    """What a task hands back to the CLI: manifest entries and the figures for the results table."""

    model: str
    entries: list[ModelEntry]
    figures: dict[str, Any] = field(default_factory=dict)
    pictures: list[Path] = field(default_factory=list)


def set_seed(seed: int) -> None:
    """Python, numpy and TensorFlow seeds in one call (Keras' own helper)."""
    import keras

    keras.utils.set_random_seed(seed)
