"""The lecture's stateful LSTM forecaster and the step model the edge runs.

TFLite cannot reset, read or save the state of a converted stateful LSTM, so the
edge runs a *step model* `(x, h, c) -> (y, h_out, c_out)` built from the trained
weights with `unroll=True` (no WHILE op; int8 conversion of a rolled LSTM crashes).
The agent owns `(h, c)`: it resets and persists them.
"""

from __future__ import annotations

import keras
from keras import layers


def build_stateful_lstm(units: int = 4, look_back: int = 5) -> keras.Model:
    """Batch 1, stateful, as in the lecture's "Using Memory" version."""
    inputs = keras.Input(batch_shape=(1, look_back, 1), name="x")
    x = layers.LSTM(units, stateful=True, name="lstm")(inputs)
    outputs = layers.Dense(1, name="dense")(x)
    return keras.Model(inputs, outputs, name="lstm_stateful")


def build_step_model(trained: keras.Model) -> keras.Model:
    """Same weights, explicit state: inputs x (1, look_back, 1), h and c (1, units)."""
    lstm = trained.get_layer("lstm")
    dense = trained.get_layer("dense")
    look_back = trained.input_shape[1]
    units = lstm.units
    x = keras.Input(batch_shape=(1, look_back, 1), name="x")
    h = keras.Input(batch_shape=(1, units), name="h")
    c = keras.Input(batch_shape=(1, units), name="c")
    step_lstm = layers.LSTM(units, unroll=True, return_state=True, name="lstm")
    out, h_out, c_out = step_lstm(x, initial_state=[h, c])
    step_dense = layers.Dense(1, name="dense")
    y = step_dense(out)
    model = keras.Model({"x": x, "h": h, "c": c}, {"y": y, "h_out": h_out, "c_out": c_out}, name="lstm_step")
    step_lstm.set_weights(lstm.get_weights())
    step_dense.set_weights(dense.get_weights())
    return model


class ResetStatesEachEpoch(keras.callbacks.Callback):
    """The lecture calls `model.reset_states()` after every epoch; Keras 3 has it on the layer only."""

    def __init__(self, layer_name: str = "lstm") -> None:
        super().__init__()
        self.layer_name = layer_name

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.model.get_layer(self.layer_name).reset_states()
