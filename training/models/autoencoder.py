"""The lecture's autoencoder: Dense 32-16-32 (relu) with a tanh output of the input's width.

For 2-D readings that lie on a line, 32-16-32 is no bottleneck: the network can learn the
identity, and then a reading off the line reconstructs as well as one on it. Whether the
lecture's run ends up projecting onto the line or copying its input is luck of the seed
(we measured the "wrong" error at 5x the clean one where the lecture saw 10x). With
`code_units` set, a linear code layer of that width sits between 16 and a mirrored 16
(32-16-code-16-32): the data must pass through as many numbers as it has degrees of
freedom, so the model learns the projection and off-line readings stand out.
"""

from __future__ import annotations

import keras
from keras import layers


def build_autoencoder(features: int = 2, code_units: int | None = None,
                      hidden: tuple[int, int] = (32, 16)) -> keras.Model:
    """tanh output, as in the lecture, so inputs must be scaled into [-1, 1]. `hidden` are the encoder's
    widths (the lecture's 32, 16); the decoder mirrors them."""
    outer, inner = hidden
    inputs = keras.Input(shape=(features,), name="reading")
    x = layers.Dense(outer, activation="relu")(inputs)
    x = layers.Dense(inner, activation="relu")(x)
    if code_units:
        x = layers.Dense(code_units, name="code")(x)
        x = layers.Dense(inner, activation="relu")(x)
    x = layers.Dense(outer, activation="relu")(x)
    outputs = layers.Dense(features, activation="tanh")(x)
    return keras.Model(inputs, outputs, name="autoencoder" if not code_units else f"autoencoder_code{code_units}")
