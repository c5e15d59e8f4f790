"""The LSTM forecaster: one step per reading, carrying its state (h, c), saved after every step.

The state on disk (`ForecasterState`): a restart must continue the series where it stopped (the
same forecasts as an uninterrupted run), so the stream's snapshot (LSTM state (h, c), recent levels,
the base's recent errors and the pending forecast) and the step count are saved after every step:
a temp file, fsync, then rename, so the file is always
the old or the new state. A file that is torn or corrupt anyway (checksum mismatch, bad JSON) or
that belongs to another model (sha256) is set aside with a logged warning and the forecaster
starts cold (`edge.fileio.StateFile`).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.fileio import StateFile
from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel
from edge.models.series_forecast import Forecast, ResidualStream, is_residual, stream_from_manifest
from edge.models.series_transform import TransformStream
from edge.models.wrapper import ModelWrapper, finite_array, matching_size
from edge.timestamps import InvalidTime, checked

STATE_VERSION = 2  # 2: the stream's snapshot (levels, base errors, pending forecast, LSTM state); 1 starts cold


class Forecaster(ModelWrapper):
    """One LSTM step per reading, carrying (h, c); the stream's state saved after each step.

    The residual recipe (`edge.models.series_forecast`: a seasonal base + the LSTM's correction + bounds)
    when the manifest has `postprocess.base`; else the transform recipe (`edge.models.series_transform`).
    Forecasts start once the stream has enough history (`span` readings, or order + look_back).
    """

    def __init__(self, entry: ModelEntry, model: TFLiteModel, state_path: Path | None = None) -> None:
        super().__init__(entry, model)
        pre, post = entry.preprocess, entry.postprocess
        matching_size(pre["look_back"], model.inputs[pre.get("input", "x")].shape[1], "preprocess.look_back")
        spec = post["state"]
        self.state_shape = tuple(spec["shape"])
        initial = [finite_array(v, "postprocess.state.initial", self.state_shape) for v in spec["initial"]]
        finite_array(pre["offset"], "preprocess.offset")
        finite_array(pre["scale"], "preprocess.scale", nonzero=True)
        self.residual = is_residual(post)
        self.stream: ResidualStream | TransformStream = (
            stream_from_manifest(pre, post, self._run) if self.residual else TransformStream(pre, post, self._run,
                                                                                           initial))
        self.coverage = self.stream.intervals.coverage if self.residual else ()  # type: ignore[union-attr]
        self.scored: tuple[bool, ...] | None = None  # the last reading inside each interval of its forecast?
        self.store = ForecasterState(state_path, entry.sha256) if state_path else None
        self._cold()
        saved = self.store.load() if self.store else None
        if saved is not None:
            try:
                self.stream.restore(saved.stream)
            except (KeyError, TypeError, ValueError) as exc:
                self.store.warning = f"{self.store.file.path}: the saved stream does not fit this model ({exc}); " \
                                     "starting cold"
                self.stream.cold()
            else:
                self.step_index, self.last_ts = saved.step, saved.last_ts

    @property
    def window(self) -> collections.deque[float]:
        """The recent levels (log values or raw readings) the stream keeps."""
        return self.stream.levels

    @property
    def state(self) -> list[np.ndarray]:
        return self.stream.state

    def _cold(self) -> None:
        self.stream.cold()
        self.step_index = 0
        self.last_ts: Any = None

    def continue_from(self, live: Forecaster) -> None:
        """Take over a running forecaster's place in the series (a reload between two readings).

        Its step count and last timestamp always carry over -- the file on disk may be a step behind the
        live state, and re-reading it would rewind the series. The same model continues exactly; another
        one keeps the recent values when both see the same levels (log or not), and starts its LSTM state
        and base errors afresh: another model's state means nothing here.
        """
        if live.entry.sha256 == self.entry.sha256 and live.state_shape == self.state_shape:
            self.stream.restore(live.stream.snapshot())
        else:
            self.stream.cold()
            if self._log() == live._log():
                self.stream.levels.extend(list(live.stream.levels)[-self.stream.levels.maxlen:])
        self.step_index, self.last_ts = live.step_index, live.last_ts
        self.commit(None)

    def _log(self) -> bool:
        return self.stream.base.log if isinstance(self.stream, ResidualStream) else self.stream.transform.log

    def reset(self) -> None:
        """Start the series afresh (the `cmd/reset` command); the cleared state is saved at once."""
        self._cold()
        self.commit(None)

    def commit(self, ts: Any) -> None:
        """Save the state after a step whose results are already on their way (see SeriesPipeline)."""
        if ts is not None:
            self.last_ts = ts
        if self.store:
            self.store.save(self.stream.snapshot(), self.step_index, self.last_ts)

    def step(self, value: float) -> Forecast | None:
        """Feed one observed value; returns the forecast of the next one (None until enough history), and
        sets `scored` (was this value inside each interval of its forecast; None: it had none).

        Nothing changes if the value is refused (ValueError: the levels cannot take it, or the forecast
        would not be a finite number). The new state is kept in memory only: `commit` saves it once the
        forecast is safe.
        """
        forecast, self.scored = self.stream.observe(float(value))
        self.step_index += 1
        return forecast


@dataclass(frozen=True)
class SavedState:
    stream: dict[str, Any]
    step: int
    last_ts: Any = None  # the timestamp of the last reading processed (re-deliveries are skipped)


class ForecasterState:
    """The forecaster's state file (`<state_dir>/<series>.state.json`, 0600)."""

    def __init__(self, path: Path | str, model_sha: str) -> None:
        self.file = StateFile(path, "starting cold", mode=0o600)
        self.model_sha = model_sha
        self.warning: str | None = None  # why the last load started cold, for the `error` topic

    def save(self, stream: dict[str, Any], step: int, last_ts: Any = None) -> None:
        self.file.save({"version": STATE_VERSION, "model_sha": self.model_sha, "step": int(step), "last_ts": last_ts,
                        "stream": stream})

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
        if not isinstance(body["stream"], dict):
            raise ValueError("'stream' is not an object")
        step = body["step"]
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**53:
            raise ValueError(f"'step' must be a whole number of readings >= 0, got {step!r}")
        try:
            last_ts = checked(body.get("last_ts"))
        except InvalidTime as exc:
            raise ValueError(f"'last_ts': {exc}") from None
        return SavedState(body["stream"], step, last_ts)
