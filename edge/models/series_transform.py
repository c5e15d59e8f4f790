"""The forecaster's series transform: optional log, then differencing at the given lags, then scaling.

The LSTM does not see raw values: with `log` and `differences = [1, 12]` it sees
w_t = (1 - B)(1 - B^12) log y_t -- the change of this month's year-on-year growth -- which is
stationary where the airline series is not (trend and growing seasonal swings). Its forecast
of w_{t+1} is turned back into a value with the same polynomial. With no log and no
differences this is plain min/max scaling (the lecture's). Both sides use this one class:
training to build windows and measure the file, the edge to run it, so they cannot disagree.
"""

from __future__ import annotations

import collections
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


class TransformStream:
    """The transform recipe (the lecture's and the old default) as a stream with the residual one's interface
    (`edge.models.series_forecast.ResidualStream`): the LSTM forecasts the transformed series itself, no
    base and no bounds."""

    def __init__(self, pre: dict[str, Any], post: dict[str, Any], run: Any, initial: list[np.ndarray]) -> None:
        self.transform = SeriesTransform.from_manifest(pre)
        self.look_back = int(pre["look_back"])
        self.x_name, self.y_name = pre.get("input", "x"), post.get("output", "y")
        spec = post["state"]
        self.state_in, self.state_out = list(spec["inputs"]), list(spec["outputs"])
        self.run, self.initial = run, initial
        self.cold()

    def cold(self) -> None:
        self.levels: collections.deque[float] = collections.deque(maxlen=self.transform.order + self.look_back)
        self.state = [s.copy() for s in self.initial]

    def observe(self, value: float) -> tuple[Any, None]:
        """(the forecast of the next reading or None until enough history, None: no bounds to score)."""
        from edge.models.series_forecast import Forecast

        level = self.transform.level(value)  # raises ValueError (a bad reading) before anything changes
        window = [*self.levels, level][-self.levels.maxlen:]
        forecast, state = None, self.state
        if len(window) == self.levels.maxlen:
            history = np.asarray(window)
            feeds = {self.x_name: self.transform.features(history).reshape(1, self.look_back, 1),
                     **dict(zip(self.state_in, self.state))}
            out = self.run(feeds)
            state = [np.asarray(out[n], np.float32).reshape(self.initial[0].shape) for n in self.state_out]
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    value_next = self.transform.invert(float(np.asarray(out[self.y_name]).ravel()[0]), history)
            except OverflowError:
                value_next = math.inf
            if not math.isfinite(value_next):
                raise ValueError(f"value {value!r} is out of the series' range: the forecast would overflow")
            forecast = Forecast(value_next, value_next, value_next, 0.0)
        self.levels.append(level)
        self.state = state
        return forecast, None

    def snapshot(self) -> dict[str, Any]:
        return {"levels": list(self.levels), "state": [np.asarray(s, np.float64).tolist() for s in self.state]}

    def restore(self, saved: dict[str, Any]) -> None:
        self.cold()
        self.levels.extend(float(v) for v in saved["levels"][-self.levels.maxlen:])
        self.state = [np.asarray(s, np.float32).reshape(self.initial[0].shape) for s in saved["state"]]
