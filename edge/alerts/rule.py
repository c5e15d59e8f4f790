"""Rules that turn a model's scores into decisions, kept apart from the model (Merlion's split).

The autoencoder gives a reconstruction error; whether that is an alert is the rule's call:
a threshold (from the manifest, the config or a command, all checked by `check_threshold`)
and k-of-n debouncing. Recalibrating changes the rule, never the model.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Any


def check_threshold(value: Any, where: str = "threshold") -> float:
    """The one validator for every threshold source (manifest, config, `cmd/threshold`): finite and > 0.

    A threshold of NaN or infinity silently switches alerting off; 0 or a negative one makes
    every reading an alert. Both are refused with the source named.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number > 0, got {value!r}")
    if not math.isfinite(value) or not value > 0:
        raise ValueError(f"{where} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass
class AnomalyRule:
    """score > threshold in at least k of the last n scores -> anomaly (k-of-n debouncing)."""

    threshold: float
    k: int = 1
    n: int = 1
    _history: collections.deque = field(default_factory=collections.deque, repr=False)
    active: bool = False

    def __post_init__(self) -> None:
        self.threshold = check_threshold(self.threshold)
        if not 1 <= self.k <= self.n:
            raise ValueError(f"debounce needs 1 <= k <= n, got k={self.k}, n={self.n}")
        self._history = collections.deque(maxlen=self.n)

    def update(self, score: float) -> tuple[bool, bool]:
        """Returns (is_anomaly, changed)."""
        self._history.append(score > self.threshold)
        now = sum(self._history) >= self.k
        changed = now != self.active
        self.active = now
        return now, changed

    def reconfigure(self, threshold: float, k: int, n: int) -> None:
        """A new threshold or debounce from the next score on, keeping the recent history and the state
        (a recalibration must not flip a sensor that is ON to OFF and back, each a message)."""
        threshold = check_threshold(threshold)
        if not 1 <= k <= n:
            raise ValueError(f"debounce needs 1 <= k <= n, got k={k}, n={n}")
        self.threshold, self.k, self.n = threshold, k, n
        self._history = collections.deque(self._history, maxlen=n)
