"""What every model wrapper shares: one interpreter, its manifest entry, and the timing of its invokes.

Each wrapper (`classifier.Classifier`, `generator.Generator`, the sensor kind's `AnomalyScorer`, the
series kind's `Forecaster`) reads its pre- and post-processing from the manifest (`edge.models.manifest`)
and checks the numbers it takes from there with `finite_array` and `matching_size`. The
quantize/dequantize with each tensor's scale and zero point happens in `TFLiteModel.run`.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import numpy as np

from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel


def finite_array(values: Any, where: str, shape: tuple[int, ...] | None = None, nonzero: bool = False) -> np.ndarray:
    """A manifest's numbers as float32, refused (ValueError naming `where`) unless finite, of the shape
    the model needs, and non-zero where they divide."""
    array = np.asarray(values, np.float64)
    if shape is not None:
        if array.size != int(np.prod(shape)):
            raise ValueError(f"{where} has shape {array.shape}, the model needs {shape}")
        array = array.reshape(shape)
    if not np.all(np.isfinite(array)) or np.any(np.abs(array) > 3e38) or nonzero and np.any(array == 0):
        raise ValueError(f"{where} must be finite numbers{' other than 0' if nonzero else ''}")
    return array.astype(np.float32)


def matching_size(value: Any, expected: int, where: str) -> int:
    """An integer from the manifest that must equal what the model's tensors say."""
    if isinstance(value, bool) or not isinstance(value, int) or value != expected:
        raise ValueError(f"{where} is {value!r}, the model's tensors say {expected}")
    return value


class LatencyWindow:
    """The last N invoke latencies of one model, for the p50/p95 in `stats`."""

    def __init__(self, size: int = 1000) -> None:
        self._values: collections.deque[float] = collections.deque(maxlen=size)
        self.count = 0

    def add(self, ms: float) -> None:
        self._values.append(ms)
        self.count += 1

    def summary(self) -> dict[str, float | int]:
        if not self._values:
            return {"count": self.count}
        values = np.fromiter(self._values, float)
        return {"count": self.count, "p50_ms": round(float(np.percentile(values, 50)), 3),
                "p95_ms": round(float(np.percentile(values, 95)), 3)}


class ModelWrapper:
    """Shared by all wrappers: the entry, the interpreter and the timing of its invokes."""

    def __init__(self, entry: ModelEntry, model: TFLiteModel) -> None:
        self.entry = entry
        self.model = model
        self.latency = LatencyWindow()

    @property
    def ref(self) -> dict[str, str]:
        """How messages name the model: name and short sha256."""
        return {"name": self.entry.name, "sha": self.entry.short_sha}

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        out = self.model.run(feeds)
        self.latency.add((time.perf_counter() - started) * 1000)
        return out
