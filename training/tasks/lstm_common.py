"""What both LSTM recipes share: the configuration (one set of CLI options) and the lecture's training loop."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from tqdm.keras import TqdmCallback

from training.datasets.errors import DatasetError
from training.datasets.series import SeriesData
from training.models.lstm import ResetStatesEachEpoch, build_stateful_lstm
from training.tasks.base import set_seed


@dataclass
class LSTMConfig:
    dataset: str = "airline"
    units: int = 4
    look_back: int = 13  # a season and one month of context (of base errors in the residual recipe)
    epochs: int = 30
    learning_rate: float = 1e-3
    train_fraction: float = 0.67
    # "auto" (the residual recipe: log or raw levels chosen on held-out training months, training/series_transform.py),
    # "log" or "none" (residual recipe, named); "log+d1+d12"-style specs with differences: the transform recipe
    # (training/tasks/lstm_lecture.py), the LSTM forecasting the transformed series itself
    transform: str = "auto"
    season: int | None = None  # season length for the base and baselines; None: from the data's dates (1 if none)
    # "step": one step ahead through every month as the edge runs it; "lecture": the lecture's min/max scaling of the
    # whole series and its off-by-one windows (transform recipe, transform none only)
    protocol: str = "step"
    # int16 activations, int8 weights: int8 activations compound over the unrolled steps and the carried state
    quantization: str = "int16x8"
    seed: int = 7  # the lecture's numpy.random.seed(7)


def train_stateful(cfg: LSTMConfig, x: np.ndarray, y: np.ndarray) -> tuple[keras.Model, keras.callbacks.History]:
    """The lecture's loop: batch 1, no shuffling, state reset after each epoch."""
    set_seed(cfg.seed)
    model = build_stateful_lstm(cfg.units, cfg.look_back)
    model.compile(loss="mean_squared_error", optimizer=keras.optimizers.Adam(cfg.learning_rate))
    history = model.fit(x, y, epochs=cfg.epochs, batch_size=1, shuffle=False, verbose=0,
                        callbacks=[ResetStatesEachEpoch(), TqdmCallback(verbose=0, desc="LSTM epochs")])
    model.get_layer("lstm").reset_states()
    return model, history


def check_constant(cfg: LSTMConfig, series: SeriesData) -> None:
    """A series of one value has nothing to forecast (every forecast is exact: the quantized file's RMSE was
    divided by Keras' 0 after the whole training): refused before any fitting."""
    if len(series.values) and float(np.ptp(series.values)) == 0.0:
        raise DatasetError(f"{cfg.dataset}: every one of the {len(series.values)} values of {series.column!r} is "
                           f"{float(series.values[0]):g}; a constant series has nothing to forecast")


def relative_change(got: float, reference: float) -> float:
    """|got - reference| / reference; 0 when both are 0, infinite when only the reference is."""
    if reference == 0:
        return 0.0 if got == 0 else float("inf")
    return abs(got - reference) / reference
