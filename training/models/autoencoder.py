"""The lecture's autoencoder: Dense 32-16-32 (relu) with a tanh output of the input's width."""

from __future__ import annotations

import keras
from keras import layers


def build_autoencoder(features: int = 2) -> keras.Model:
    """tanh output, as in the lecture, so inputs must be scaled into [-1, 1]."""
    inputs = keras.Input(shape=(features,), name="reading")
    x = layers.Dense(32, activation="relu")(inputs)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dense(32, activation="relu")(x)
    outputs = layers.Dense(features, activation="tanh")(x)
    return keras.Model(inputs, outputs, name="autoencoder")
