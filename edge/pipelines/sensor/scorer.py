"""The autoencoder's scorer: sensor readings -> a reconstruction error (the rule that makes it an alert is
`edge.alerts`)."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel
from edge.models.sensor_window import TIME_FEATURES, WINDOW_NORMS, model_inputs
from edge.models.wrapper import ModelWrapper, finite_array, matching_size
from edge.numbers import show
from edge.pipelines.sensor.evidence import column_names, contributions
from edge.readings import InvalidReading
from edge.timestamps import clock_seconds


class AnomalyScorer(ModelWrapper):
    """Reconstruction MSE of the model's input for the last `window` readings.

    The input is built by `model_inputs` (edge.models.sensor_window), the function the trainer built
    its data with, on the raw readings and their times: scaling, calendar features (`time_features`)
    and per-window normalisation (`window_norm`) give the numbers the model was trained on.
    """

    def __init__(self, entry: ModelEntry, model: TFLiteModel) -> None:
        super().__init__(entry, model)
        pre = entry.preprocess
        self.features: list[str] = [str(f) for f in pre["features"]]
        self.time_features: list[str] = [str(k) for k in pre.get("time_features") or []]
        if not set(self.time_features) <= set(TIME_FEATURES) or (pre.get("window_norm") or "none") not in WINDOW_NORMS:
            raise ValueError(f"preprocess.time_features {self.time_features} / window_norm {pre.get('window_norm')!r}: "
                             f"expected some of {TIME_FEATURES} / one of {WINDOW_NORMS}")
        width = len(self.features) + 2 * len(self.time_features)  # per reading: features, then sin/cos of each
        inputs = int(np.prod(entry.inputs[0].shape))
        self.window = matching_size(pre["window"], inputs // max(1, width), "preprocess.window")
        if not self.features or self.window * width != inputs:
            raise ValueError(f"{len(self.features)} features + {width - len(self.features)} calendar features x "
                             f"window {self.window} is not the model's {inputs} inputs")
        finite_array(pre["offset"], "preprocess.offset", (len(self.features),))
        finite_array(pre["scale"], "preprocess.scale", (len(self.features),), nonzero=True)
        self.offset = np.asarray(pre["offset"], np.float64)  # as `model_inputs` reads them
        self.scale = np.asarray(pre["scale"], np.float64)
        self._values: collections.deque[np.ndarray] = collections.deque(maxlen=self.window)
        self._seconds: collections.deque[float] = collections.deque(maxlen=self.window)
        self.names = column_names(self.features, self.time_features)
        self.errors: np.ndarray | None = None  # the last score's squared error per input number (its evidence)

    @property
    def n_features(self) -> int:
        return len(self.features)

    def score(self, values: Any, ts: Any = None) -> float | None:
        """Score one reading stamped `ts` (None until `window` readings have arrived).

        A reading so large that its scaled value overflows float32 (|x| > 3e38) is refused as
        invalid rather than scored as infinity, which JSON cannot carry; so is a reading without a
        time (`edge.timestamps.clock_seconds`) when the model's calendar features need one.
        """
        raw = np.asarray(values, np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = ((raw - self.offset) / self.scale).astype(np.float32)
        if not np.all(np.isfinite(scaled)):
            shown = ", ".join(show(v) for v in list(values)[:8])
            raise InvalidReading(f"values [{shown}] are beyond the float32 range (±3.4e38) once scaled for the model "
                                 "((value - offset) / scale, from the manifest)")
        seconds = clock_seconds(ts)
        if self.time_features and seconds is None:
            raise InvalidReading(f"model {self.entry.name!r} reads the time of day/week ({'+'.join(self.time_features)}"
                                 f"): each reading needs a 'ts' that is a time (ISO-8601 or epoch seconds), got {ts!r}")
        self._values.append(raw)
        self._seconds.append(np.nan if seconds is None else seconds)
        if len(self._values) < self.window:
            return None
        stamps = np.asarray(self._seconds, np.float64) if self.time_features else None
        x = model_inputs(np.stack(self._values), stamps, self.entry.preprocess).reshape(self.entry.inputs[0].shape)
        out = self._run({self.entry.inputs[0].name: x})[self.entry.outputs[0].name]
        self.errors = (out.reshape(x.shape).astype(np.float64) - x) ** 2
        return float(np.mean(self.errors))

    def evidence(self) -> dict[str, Any] | None:
        """The last score's top contributors and each feature's share (`evidence.contributions`)."""
        return None if self.errors is None else contributions(self.errors, self.names)
