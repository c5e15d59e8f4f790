"""The LSTM forecaster: one step per reading, carrying its state (h, c), saved after every step.

The state on disk (`ForecasterState`): a restart must continue the series where it stopped (the
same forecasts as an uninterrupted run), so the LSTM state (h, c), the window of recent values and
the step count are saved after every step: a temp file, fsync, then rename, so the file is always
the old or the new state. A file that is torn or corrupt anyway (checksum mismatch, bad JSON) or
that belongs to another model (sha256) is set aside with a logged warning and the forecaster
starts cold (`edge.fileio.StateFile`).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.fileio import StateFile
from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel
from edge.models.series_transform import SeriesTransform
from edge.models.wrapper import ModelWrapper, finite_array, matching_size

STATE_VERSION = 1


class Forecaster(ModelWrapper):
    """One LSTM step per reading, carrying (h, c); state and recent values saved after each step.

    The readings go through the manifest's series transform (see `edge.models.series_transform`): the model sees
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


@dataclass(frozen=True)
class SavedState:
    state: list[list]
    window: list[float]
    step: int
    last_ts: Any = None  # the timestamp of the last reading processed (re-deliveries are skipped)


class ForecasterState:
    """The forecaster's state file (`<state_dir>/<series>.state.json`, 0600)."""

    def __init__(self, path: Path | str, model_sha: str) -> None:
        self.file = StateFile(path, "starting cold", mode=0o600)
        self.model_sha = model_sha
        self.warning: str | None = None  # why the last load started cold, for the `error` topic

    def save(self, state: Iterable[np.ndarray], window: Iterable[float], step: int, last_ts: Any = None) -> None:
        self.file.save({"version": STATE_VERSION, "model_sha": self.model_sha, "step": int(step), "last_ts": last_ts,
                        "state": [np.asarray(s, np.float64).tolist() for s in state],
                        "window": [float(v) for v in window]})

    def load(self) -> SavedState | None:
        """The saved state, or None (no file, or a bad one: set aside with a warning)."""
        saved = self.file.load(self._parse)
        self.warning = self.file.problem
        return saved

    def _parse(self, body: dict[str, Any]) -> SavedState:
        if body["version"] != STATE_VERSION:
            raise ValueError(f"state version {body['version']} is not {STATE_VERSION}")
        if body["model_sha"] != self.model_sha:
            raise ValueError("saved for another model (sha256 differs)")
        return SavedState(body["state"], body["window"], int(body["step"]), body.get("last_ts"))
