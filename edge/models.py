"""Model wrappers: one interpreter each, pre/post-processing from the manifest (see `edge.manifest`).

- `Classifier`: frames -> label, score, top-k.
- `AnomalyScorer`: the model gives a score (reconstruction error); the rule that turns scores
  into alerts is apart (`edge.alerts.rule`), so the threshold changes at run time without the model.
- `Forecaster`: owns the LSTM state (h, c) and the window of recent values; resets on command
  and saves itself (see `edge.state`) so a restart continues the series.
- `Generator`: noise -> images (synthetic camera, demo pictures).
The quantize/dequantize with each tensor's scale and zero point happens in `TFLiteModel.run`.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.manifest import ModelEntry
from edge.preprocess import frame_to_input, pixels_to_input
from edge.readings import InvalidReading
from edge.runtime import TFLiteModel, dequantize, quantize
from edge.series import SeriesTransform
from edge.state import ForecasterState
from edge.timestamps import order_key


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


@dataclass(frozen=True)
class Classification:
    label: str
    index: int
    score: float
    top_k: list[dict[str, Any]]
    latency_ms: float


class Classifier(ModelWrapper):
    def __init__(self, entry: ModelEntry, model: TFLiteModel, invert: bool | None = None, top_k: int = 3) -> None:
        super().__init__(entry, model)
        self.labels: list[str] = [str(label) for label in entry.postprocess["labels"]]
        self._in_spec, self._out_spec = model.inputs[entry.inputs[0].name], model.outputs[entry.outputs[0].name]
        if len(self.labels) != self._out_spec.shape[-1]:
            raise ValueError(f"postprocess.labels has {len(self.labels)} labels, the model has "
                             f"{self._out_spec.shape[-1]} outputs")
        self.invert = invert
        self.top_k = top_k
        pre = entry.preprocess
        self._size = (matching_size(pre["height"], self._in_spec.shape[1], "preprocess.height"),
                      matching_size(pre["width"], self._in_spec.shape[2], "preprocess.width"))
        finite_array(pre["pixel_offset"], "preprocess.pixel_offset")
        finite_array(pre["pixel_scale"], "preprocess.pixel_scale", nonzero=True)
        # A uint8 grayscale frame at the model's size (a Pi camera set to it, a replay file) needs no
        # resize, so each of the 256 gray levels maps to one input value: one table lookup per frame
        # instead of five array passes. Built with the same functions as the general path: bit-exact.
        self._table = quantize(pixels_to_input(np.arange(256, dtype=np.float32), pre, invert), self._in_spec)

    def _to_input(self, frame: np.ndarray) -> np.ndarray:
        """A frame -> the input tensor's values (quantized when the tensor is)."""
        if frame.dtype == np.uint8 and frame.shape[:2] == self._size and (frame.ndim == 2 or frame.shape[2] == 1):
            return self._table[frame.reshape(self._size)].reshape(self._in_spec.shape)
        x = frame_to_input(frame, self.entry.preprocess, self.invert)
        return quantize(x.reshape(self._in_spec.shape), self._in_spec)

    def infer(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """Preprocess and invoke: the model's raw output and the milliseconds both took.

        The camera pipeline runs this in its inference thread and `postprocess` in its
        publishing thread, so only this part stands between one frame's invoke and the next.
        """
        started = time.perf_counter()
        x = self._to_input(frame)
        invoked = time.perf_counter()
        raw = self.model.run_one_raw(x)
        done = time.perf_counter()
        self.latency.add((done - invoked) * 1000)
        return raw, (done - started) * 1000

    def postprocess(self, raw: np.ndarray, latency_ms: float) -> Classification:
        """Raw output -> label, score and top-k (ties between int8 scores go to the lowest index, as argmax)."""
        scores = dequantize(raw, self._out_spec)[0].tolist()
        # sorted() is stable with reverse=True too; on ten numbers it beats numpy's call overhead
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[: self.top_k]
        top = [{"label": self.labels[i], "index": i, "score": round(scores[i], 5)} for i in order]
        best = order[0]
        return Classification(self.labels[best], best, scores[best], top, latency_ms)

    def classify(self, frame: np.ndarray) -> Classification:
        return self.postprocess(*self.infer(frame))


class AnomalyScorer(ModelWrapper):
    """Reconstruction MSE over the scaled features of the last `window` readings."""

    def __init__(self, entry: ModelEntry, model: TFLiteModel) -> None:
        super().__init__(entry, model)
        pre = entry.preprocess
        if pre.get("time_features") or (pre.get("window_norm") or "none") != "none":
            raise ValueError("preprocess.time_features / window_norm are not supported by this agent's scorer yet "
                             "(retrain without --time-features and --window-norm)")
        self.features: list[str] = [str(f) for f in pre["features"]]
        inputs = int(np.prod(entry.inputs[0].shape))
        self.window = matching_size(pre["window"], inputs // max(1, len(self.features)), "preprocess.window")
        if not self.features or self.window * len(self.features) != inputs:
            raise ValueError(f"{len(self.features)} features x window {self.window} is not the model's {inputs} inputs")
        self.offset = finite_array(pre["offset"], "preprocess.offset", (len(self.features),))
        self.scale = finite_array(pre["scale"], "preprocess.scale", (len(self.features),), nonzero=True)
        self._recent: collections.deque[np.ndarray] = collections.deque(maxlen=self.window)

    @property
    def n_features(self) -> int:
        return len(self.features)

    def score(self, values: np.ndarray) -> float | None:
        """Score one reading (None until `window` readings have arrived).

        A reading so large that its scaled value overflows float32 (|x| > 3e38) is refused as
        invalid rather than scored as infinity, which JSON cannot carry.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = ((np.asarray(values, np.float64) - self.offset) / self.scale).astype(np.float32)
        if not np.all(np.isfinite(scaled)):
            raise InvalidReading(f"values {list(values)[:8]} are beyond float32 range once scaled for the model")
        self._recent.append(scaled)
        if len(self._recent) < self.window:
            return None
        x = np.concatenate(list(self._recent)).reshape(self.entry.inputs[0].shape)
        out = self._run({self.entry.inputs[0].name: x})[self.entry.outputs[0].name]
        return float(np.mean((out.reshape(x.shape).astype(np.float64) - x) ** 2))


class Forecaster(ModelWrapper):
    """One LSTM step per reading, carrying (h, c); state and recent values saved after each step.

    The readings go through the manifest's series transform (see `edge.series`): the model sees
    `look_back` transformed features, which need `order` earlier values each, so forecasts start
    once `order + look_back` readings have arrived.
    """

    def __init__(self, entry: ModelEntry, model: TFLiteModel, state_path: Path | None = None) -> None:
        super().__init__(entry, model)
        pre, post = entry.preprocess, entry.postprocess
        self.look_back = matching_size(pre["look_back"], model.inputs[pre.get("input", "x")].shape[1],
                                       "preprocess.look_back")
        self.transform = SeriesTransform.from_manifest(pre)
        spec = post["state"]
        self.state_inputs: list[str] = list(spec["inputs"])
        self.state_outputs: list[str] = list(spec["outputs"])
        self.state_shape = tuple(spec["shape"])
        self.initial = [finite_array(v, "postprocess.state.initial", self.state_shape) for v in spec["initial"]]
        finite_array(self.transform.offset, "preprocess.offset")
        finite_array(self.transform.scale, "preprocess.scale", nonzero=True)
        self.x_name = pre.get("input", "x")
        self.y_name = post.get("output", "y")
        self.store = ForecasterState(state_path, entry.sha256) if state_path else None
        self._cold()
        saved = self.store.load() if self.store else None
        if saved is not None:
            self.state = [np.asarray(s, np.float32).reshape(self.state_shape) for s in saved.state]
            self.window.extend(saved.window[-self.window.maxlen:])
            self.step_index = saved.step
            self.last_ts = saved.last_ts

    def _cold(self) -> None:
        self.state = [v.copy() for v in self.initial]
        self.window: collections.deque[float] = collections.deque(maxlen=self.transform.order + self.look_back)
        self.step_index = 0
        self.last_ts: Any = None

    def continue_from(self, live: Forecaster) -> None:
        """Take over a running forecaster's place in the series (a reload between two readings).

        Its step count and last timestamp always carry over -- the file on disk may
        be a step behind the live state, and re-reading it would rewind the series. The recent values
        carry over when both models see the same levels (log or not); the LSTM state (h, c) only
        for the same model: another model's state means nothing here.
        """
        if live.entry.sha256 == self.entry.sha256 and live.state_shape == self.state_shape:
            self.state = [s.copy() for s in live.state]
        self.window.clear()
        if live.transform.log == self.transform.log:  # the window holds levels: log values or raw ones
            self.window.extend(list(live.window)[-self.window.maxlen:])
        self.step_index, self.last_ts = live.step_index, live.last_ts
        self.commit(None)

    def reset(self) -> None:
        """Start the series afresh (the `cmd/reset` command); the cleared state is saved at once."""
        self._cold()
        self.commit(None)

    def already_seen(self, ts: Any) -> bool:
        """True for a reading whose timestamp is not after the last one processed: a re-delivery.

        MQTT QoS 1 is at-least-once, so after a crash the broker may deliver a reading again;
        stepping the LSTM twice on it would shift every later forecast. Only timestamps with
        an order are compared -- numbers (epoch seconds, indices) and ISO-8601 strings; readings
        without one are always processed.
        """
        new, last = order_key(ts), order_key(self.last_ts)
        return new is not None and last is not None and type(new) is type(last) and new <= last

    def commit(self, ts: Any) -> None:
        """Save the state after a step whose results are already on their way (see SeriesPipeline)."""
        if ts is not None:
            self.last_ts = ts
        if self.store:
            self.store.save(self.state, self.window, self.step_index, self.last_ts)

    def step(self, value: float) -> float | None:
        """Feed one observed value; returns the forecast of the next one (None until enough history).

        Nothing changes if the value is refused (ValueError: the transform cannot take it, or the
        forecast would not be a finite number). The new state is kept in memory only: `commit`
        saves it once the forecast is safe.
        """
        level = self.transform.level(value)  # raises ValueError (a bad reading) before anything changes
        window = [*self.window, level][-self.window.maxlen:]
        forecast, state = None, self.state
        if len(window) == self.window.maxlen:
            history = np.asarray(window)
            feeds = {self.x_name: self.transform.features(history).reshape(1, self.look_back, 1)}
            feeds.update({name: s for name, s in zip(self.state_inputs, self.state)})
            out = self._run(feeds)
            state = [out[name].reshape(self.state_shape) for name in self.state_outputs]
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    forecast = self.transform.invert(float(out[self.y_name].ravel()[0]), history)
            except OverflowError:
                forecast = math.inf
            if not math.isfinite(forecast):
                raise ValueError(f"value {value!r} is out of the series' range: the forecast would overflow")
        self.window.append(level)
        self.state = state
        self.step_index += 1
        return forecast


class Generator(ModelWrapper):
    """The GAN generator. A class-conditional one (the manifest's `preprocess.label_input`) takes a
    one-hot class beside the noise; the lecture's unconditional one takes noise only.

    Callers draw noise from normal(0, 1); it is multiplied by `preprocess.latent_scale` (default 1), the
    "truncation trick" (BigGAN, Brock et al. 2019): typical, cleaner samples for some variety (docs/gan.md).
    """

    def __init__(self, entry: ModelEntry, model: TFLiteModel, seed: int = 0) -> None:
        super().__init__(entry, model)
        pre = entry.preprocess
        self.label_input: str | None = pre.get("label_input")
        self.num_classes = int(pre.get("num_classes", 0))
        if self.label_input and pre.get("label_encoding", "one_hot") != "one_hot":
            raise ValueError(f"model {entry.name!r}: label_encoding {pre['label_encoding']!r} is not one_hot")
        self.noise_input = next(t.name for t in entry.inputs if t.name != self.label_input)
        scale = pre.get("latent_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 10:
            raise ValueError(f"model {entry.name!r}: latent_scale must be a number in (0, 10], got {scale!r}")
        self.latent_scale = np.float32(scale)
        self.rng = np.random.default_rng(seed)  # the classes drawn when none is asked for

    def draw_label(self) -> int | None:
        """A uniformly drawn class (seeded) for a conditional generator, None for an unconditional one."""
        return int(self.rng.integers(self.num_classes)) if self.label_input else None

    def generate(self, noise: np.ndarray, label: int | None = None) -> np.ndarray:
        """Noise (latent_dim,) and, for a conditional generator, a class index (None: drawn uniformly)
        -> uint8 image (H, W) with the manifest's pixel scaling."""
        entry, post = self.entry, self.entry.postprocess
        feeds = {self.noise_input: (noise * self.latent_scale).reshape(entry.input(self.noise_input).shape)}
        if self.label_input:
            label = self.draw_label() if label is None else int(label)
            if not 0 <= label < self.num_classes:
                raise ValueError(f"class {label} is out of range: model {entry.name!r} has {self.num_classes}")
            one_hot = np.zeros(entry.input(self.label_input).shape, np.float32)
            one_hot.reshape(-1)[label] = 1.0
            feeds[self.label_input] = one_hot
        elif label is not None:
            raise ValueError(f"model {entry.name!r} is unconditional: it takes no class label")
        out = self._run(feeds)
        pixels = out[entry.outputs[0].name] * post["pixel_scale"] + post["pixel_offset"]
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8).reshape(post["height"], post["width"])

