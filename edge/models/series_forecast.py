"""The residual forecaster: a seasonal base the device computes from manifest numbers, plus an LSTM
correction of the base's errors, plus split-conformal bounds.

Why this shape: on short real series an LSTM alone loses to the textbook (seasonal naive, SARIMA). The
base is the "airline model" recursion -- SARIMA(0,1,1)(0,1,1)s on the levels u (log values or raw) --
fitted on the host (training/series_base.py) and carried as two numbers (theta, Theta):

    b[t] = u[t-1] + u[t-s] - u[t-s-1] + theta e[t-1] + Theta e[t-s] + theta Theta e[t-s-1],  e = u - b

(kind `seasonal_naive`: b[t] = u[t-s], the fallback when the fit fails or loses on validation). The
LSTM sees the last `look_back` base errors and forecasts the next one; the forecast is
u_hat = b + weight * correction, with `weight` chosen on held-out months (0 when the correction does
not help: the forecast is then the base, the floor). Bounds are u_hat -/+ the conformal half-widths,
mapped back through exp for a log series (so they are multiplicative there).
Training and the edge both run `ResidualStream`, so they cannot disagree.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.models.wrapper import finite_array
from edge.numbers import finite

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
KINDS = ("airline", "seasonal_naive")


def _number(value: Any, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise ValueError(f"{where} is {value!r}: expected a number in [{low}, {high}]")
    return float(value)


@dataclass(frozen=True)
class Base:
    """The seasonal base on levels u (log or raw); `season` 1 means no season (ARIMA(0,1,1) / persistence)."""

    kind: str = "airline"
    season: int = 12
    log: bool = True
    theta: float = 0.0
    seasonal_theta: float = 0.0

    @classmethod
    def from_manifest(cls, spec: dict[str, Any]) -> Base:
        if spec.get("kind") not in KINDS:
            raise ValueError(f"postprocess.base.kind is {spec.get('kind')!r}: expected one of {KINDS}")
        season = spec.get("season")
        if isinstance(season, bool) or not isinstance(season, int) or not 1 <= season <= 1000:
            raise ValueError(f"postprocess.base.season is {season!r}: expected an integer 1..1000")
        return cls(spec["kind"], season, bool(spec.get("log", False)),
                   _number(spec.get("theta", 0.0), "postprocess.base.theta", -1, 1),
                   _number(spec.get("seasonal_theta", 0.0), "postprocess.base.seasonal_theta", -1, 1))

    def to_manifest(self) -> dict[str, Any]:
        return {"kind": self.kind, "season": self.season, "log": self.log, "theta": self.theta,
                "seasonal_theta": self.seasonal_theta}

    @property
    def span(self) -> int:
        """Levels the recursion needs before it can forecast (s + 1)."""
        return self.season + 1

    def level(self, value: float) -> float:
        if self.log:
            if not value > 0:
                raise ValueError(f"this series is forecast on log values: it needs values > 0, got {value}")
            return math.log(value)
        return float(value)

    def value(self, level: float) -> float:
        with np.errstate(over="ignore"):
            return float(np.exp(level)) if self.log else float(level)

    def forecast(self, levels: Sequence[float], errors: Sequence[float]) -> float:
        """b for the month after `levels[-1]`; `errors[-k]` is the base error of `levels[-k]` (0: none)."""
        s = self.season
        if self.kind == "seasonal_naive":
            return float(levels[-s])
        if s <= 1:
            return float(levels[-1] + self.theta * errors[-1])
        return float(levels[-1] + levels[-s] - levels[-s - 1] + self.theta * errors[-1]
                     + self.seasonal_theta * errors[-s] + self.theta * self.seasonal_theta * errors[-s - 1])


def base_errors(base: Base, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The base's forecast and error of every month (NaN forecast, 0 error before month `span`)."""
    forecasts = np.full(len(levels), np.nan)
    errors = np.zeros(len(levels))
    for t in range(base.span, len(levels)):
        forecasts[t] = base.forecast(levels[:t], errors[:t])
        errors[t] = levels[t] - forecasts[t]
    return forecasts, errors


@dataclass(frozen=True)
class Correction:
    """The LSTM's input and output: base errors in as x = (e - offset) / scale (preprocess), the correction
    out as y * out_scale + out_offset (postprocess), added with `weight` in [0, 1] (postprocess.correction)."""

    look_back: int
    offset: float
    scale: float
    weight: float
    out_offset: float | None = None  # None: the input's
    out_scale: float | None = None

    @classmethod
    def from_manifest(cls, pre: dict[str, Any], post: dict[str, Any]) -> Correction:
        numbers = {}
        for where, spec in (("preprocess", pre), ("postprocess", post)):
            for key in ("offset", "scale"):
                numbers[where, key] = _number(spec.get(key), f"{where}.{key}")
            if numbers[where, "scale"] == 0:
                raise ValueError(f"{where}.scale must not be 0")
        weight = _number(post.get("correction", {}).get("weight"), "postprocess.correction.weight", 0, 1)
        return cls(int(pre["look_back"]), numbers["preprocess", "offset"], numbers["preprocess", "scale"], weight,
                   numbers["postprocess", "offset"], numbers["postprocess", "scale"])

    def output(self, y: float) -> float:
        scale = self.scale if self.out_scale is None else self.out_scale
        return y * scale + (self.offset if self.out_offset is None else self.out_offset)


@dataclass(frozen=True)
class Intervals:
    """Split-conformal half-widths on the level scale, one per nominal coverage."""

    coverage: tuple[float, ...] = ()
    half_width: tuple[float, ...] = ()

    @classmethod
    def from_manifest(cls, spec: dict[str, Any] | None) -> Intervals:
        if not spec:
            return cls()
        coverage = tuple(_number(c, "postprocess.intervals.coverage", 0, 1) for c in spec["coverage"])
        widths = tuple(_number(w, "postprocess.intervals.half_width", 0) for w in spec["half_width"])
        if len(coverage) != len(widths):
            raise ValueError("postprocess.intervals: one half_width per coverage")
        return cls(coverage, widths)

    def to_manifest(self) -> dict[str, Any]:
        return {"coverage": list(self.coverage), "half_width": list(self.half_width),
                "on": "levels (log values when base.log)"}


@dataclass(frozen=True)
class Forecast:
    """One forecast: the value, its base and correction (levels) and the bounds for each coverage."""

    value: float
    level: float
    base_level: float
    correction: float
    bounds: tuple[tuple[float, float, float], ...] = ()  # (coverage, lower, upper)

    def inside(self, observed: float) -> tuple[bool, ...]:
        return tuple(lower <= observed <= upper for _, lower, upper in self.bounds)


@dataclass
class ResidualStream:
    """One reading at a time: updates the base errors, steps the LSTM (its state carried), forecasts.

    `run` is one invoke of the step model `(x, h, c) -> (y, h_out, c_out)` (names in `names`)."""

    base: Base
    correction: Correction
    intervals: Intervals
    run: Run
    initial: list[np.ndarray]
    names: dict[str, Any] = field(default_factory=lambda: {"x": "x", "y": "y", "state_in": ["h", "c"],
                                                            "state_out": ["h_out", "c_out"]})

    def __post_init__(self) -> None:
        self.cold()

    def cold(self) -> None:
        self.levels: collections.deque[float] = collections.deque(maxlen=self.base.span)
        self.errors: collections.deque[float] = collections.deque(
            [0.0] * max(self.correction.look_back, self.base.span), maxlen=max(self.correction.look_back,
                                                                               self.base.span))
        self.state = [s.copy() for s in self.initial]
        self.pending: Forecast | None = None

    def observe(self, value: float) -> tuple[Forecast | None, tuple[bool, ...] | None]:
        """The forecast of the next reading (None until `span` readings) and, when this reading was
        forecast, whether it fell inside each interval. Raises ValueError (nothing changed) on a value
        the levels cannot take or a forecast that would not be finite."""
        level = self.base.level(value)
        error = level - self.pending.base_level if self.pending else 0.0
        levels, errors = [*self.levels, level], [*self.errors, error][-self.errors.maxlen:]
        forecast, state = None, self.state
        if len(levels) >= self.base.span:
            forecast, state = self._forecast(levels[-self.base.span:], errors)
        scored = self.pending.inside(value) if self.pending else None
        self.levels.append(level)
        self.errors.append(error)
        self.state, self.pending = state, forecast
        return forecast, scored

    def _forecast(self, levels: list[float], errors: list[float]) -> tuple[Forecast, list[np.ndarray]]:
        c, names = self.correction, self.names
        x = (np.asarray(errors[-c.look_back:], np.float64) - c.offset) / c.scale
        feeds = {names["x"]: x.astype(np.float32).reshape(1, c.look_back, 1),
                 **dict(zip(names["state_in"], self.state))}
        out = self.run(feeds)
        state = [np.asarray(out[n], np.float32).reshape(self.initial[0].shape) for n in names["state_out"]]
        correction = c.output(float(np.asarray(out[names["y"]]).ravel()[0]))
        forecast = self.compose(self.base.forecast(levels, errors), correction)
        if not all(math.isfinite(v) for v in (forecast.value, forecast.level,
                                              *(b for _, lo, hi in forecast.bounds for b in (lo, hi)))):
            raise ValueError("the value is out of the series' range: the forecast would overflow")
        return forecast, state

    def compose(self, base_level: float, correction: float) -> Forecast:
        """The forecast from the base and the LSTM's correction (both on the level scale)."""
        level = base_level + self.correction.weight * correction
        bounds = tuple((cov, self.base.value(level - w), self.base.value(level + w))
                       for cov, w in zip(self.intervals.coverage, self.intervals.half_width))
        return Forecast(self.base.value(level), level, base_level, correction, bounds)

    def snapshot(self) -> dict[str, Any]:
        """What a restart needs to continue exactly (see the series kind's state file)."""
        pending = None if self.pending is None else [self.pending.base_level, self.pending.correction]
        return {"levels": list(self.levels), "errors": list(self.errors), "pending": pending,
                "state": [np.asarray(s, np.float64).tolist() for s in self.state]}

    def restore(self, saved: dict[str, Any]) -> None:
        """Continue from a `snapshot`; ValueError naming the part that does not fit this model (the caller starts
        cold): a state of another shape ran until every reading was refused "invalid", blamed on the sender."""
        self.cold()
        levels, errors = (numbers_of(saved[k], k)[-limit:] for k, limit in (("levels", self.levels.maxlen),
                                                                          ("errors", self.errors.maxlen)))
        state, pending = saved["state"], saved.get("pending")
        if not isinstance(state, list) or len(state) != len(self.initial):
            raise ValueError(f"state: expected {len(self.initial)} arrays, got {type(state).__name__} "
                             f"{len(state) if isinstance(state, list) else ''}".rstrip())
        arrays = [finite_array(s, f"state[{i}]", np.shape(init)) for i, (s, init) in
                  enumerate(zip(state, self.initial, strict=True))]  # the manifest's own check: shape, finite, float32
        self.levels.extend(levels)
        self.errors.extend(errors)
        self.state = arrays
        if pending is not None:
            base_level, correction = numbers_of(pending, "pending", length=2)
            self.pending = self.compose(base_level, correction)
            if not all(math.isfinite(v) for v in (self.pending.value, *(b for _, lo, hi in self.pending.bounds
                                                                            for b in (lo, hi)))):
                raise ValueError("pending: the saved forecast overflows")


def numbers_of(values: Any, where: str, length: int | None = None) -> list[float]:
    """A saved list of finite float32-range numbers (`edge.numbers.finite`), of `length` if given; ValueError."""
    if not isinstance(values, list) or (length is not None and len(values) != length):
        raise ValueError(f"{where}: expected a list of {length or 'some'} numbers, got {type(values).__name__}")
    return [finite(v, f"{where}[{i}]", float32=True) for i, v in enumerate(values)]


def replay(stream: ResidualStream, values: Sequence[float]) -> list[Forecast | None]:
    """Forecasts made after each reading (index t: the forecast of reading t + 1), from a cold stream."""
    stream.cold()
    return [stream.observe(float(v))[0] for v in values]


def is_residual(post: dict[str, Any]) -> bool:
    """A manifest entry of the residual recipe (it has a base); else the transform recipe (the lecture's)."""
    return "base" in post


def stream_from_manifest(pre: dict[str, Any], post: dict[str, Any], run: Run) -> ResidualStream:
    """The stream an entry's `preprocess` and `postprocess` describe (ValueError naming a wrong number)."""
    spec = post["state"]
    shape = tuple(int(d) for d in spec["shape"])
    initial = []
    for value in spec["initial"]:
        array = np.asarray(value, np.float64)
        if array.size != int(np.prod(shape)) or not np.all(np.isfinite(array)):
            raise ValueError(f"postprocess.state.initial must be finite numbers of shape {shape}")
        initial.append(array.reshape(shape).astype(np.float32))
    names = {"x": pre.get("input", "x"), "y": post.get("output", "y"), "state_in": list(spec["inputs"]),
             "state_out": list(spec["outputs"])}
    return ResidualStream(Base.from_manifest(post["base"]), Correction.from_manifest(pre, post),
                          Intervals.from_manifest(post.get("intervals")), run, initial, names)
