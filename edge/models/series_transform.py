"""The forecaster's series transform: optional log, then differencing at the given lags, then scaling.

The LSTM does not see raw values: with `log` and `differences = [1, 12]` it sees
w_t = (1 - B)(1 - B^12) log y_t -- the change of this month's year-on-year growth -- which is
stationary where the airline series is not (trend and growing seasonal swings). Its forecast
of w_{t+1} is turned back into a value with the same polynomial. With no log and no
differences this is plain min/max scaling (the lecture's). Both sides use this one class:
training to build windows and measure the file, the edge to run it, so they cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SeriesTransform:
    log: bool = False
    differences: tuple[int, ...] = ()
    offset: float = 0.0  # of the transformed feature: x = (w - offset) / scale
    scale: float = 1.0

    @classmethod
    def from_manifest(cls, pre: dict[str, Any]) -> SeriesTransform:
        spec = pre.get("transform", {})
        return cls(bool(spec.get("log", False)), tuple(int(lag) for lag in spec.get("differences", ())),
                   float(pre["offset"]), float(pre["scale"]))

    def to_manifest(self) -> dict[str, Any]:
        return {"log": self.log, "differences": list(self.differences)}

    @property
    def poly(self) -> np.ndarray:
        """Coefficients p_0..p_L of prod(1 - B^lag): w_t = sum_k p_k u_{t-k}, p_0 = 1."""
        poly = np.array([1.0])
        for lag in self.differences:
            factor = np.zeros(lag + 1)
            factor[0], factor[lag] = 1.0, -1.0
            poly = np.convolve(poly, factor)
        return poly

    @property
    def order(self) -> int:
        """How many earlier values one feature needs (L = sum of the lags)."""
        return len(self.poly) - 1

    def level(self, value: float) -> float:
        """A raw reading -> u (log or not)."""
        if self.log:
            if value <= 0:
                raise ValueError(f"the log transform needs values > 0, got {value}")
            return math.log(value)
        return float(value)

    def features(self, levels: np.ndarray) -> np.ndarray:
        """Scaled features x_t for every t with enough history (len(levels) - L of them)."""
        levels = np.asarray(levels, np.float64)
        w = np.convolve(levels, self.poly, mode="valid") if self.order else levels
        return ((w - self.offset) / self.scale).astype(np.float32)

    def invert(self, x_next: float, levels: np.ndarray) -> float:
        """A scaled forecast x_{t+1} and the levels up to u_t -> the forecast value y_{t+1}."""
        w_next = float(x_next) * self.scale + self.offset
        p = self.poly
        recent = np.asarray(levels, np.float64)[len(levels) - self.order:][::-1] if self.order else np.array([])
        u_next = w_next - float(np.dot(p[1:], recent))  # u_{t+1} = w_{t+1} - sum_{k>=1} p_k u_{t+1-k}
        return math.exp(u_next) if self.log else u_next
