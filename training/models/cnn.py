"""The lecture's CNN: Conv(32,5x5,same)-MaxPool-Conv(64)-Conv(128)-Conv(64)-MaxPool-Dense(1024)-Dropout-Dense."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers


def build_lecture_cnn(input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10) -> keras.Model:
    """Exactly the lecture's layer stack; softmax output so scores are probabilities."""
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape, name="image"),
            layers.Conv2D(32, (5, 5), activation="relu", padding="same"),
            layers.MaxPooling2D(pool_size=(2, 2), strides=2),
            layers.Conv2D(64, (5, 5), activation="relu"),
            layers.Conv2D(128, (5, 5), activation="relu"),
            layers.Conv2D(64, (5, 5), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2), strides=2),
            layers.Flatten(),
            layers.Dense(1024, activation="relu"),
            layers.Dropout(0.1),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="cnn_lecture",
    )
    return model


def build_compact_cnn(input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10,
                      bn_momentum: float = 0.99) -> keras.Model:
    """Two VGG-style blocks of 3x3 convolutions with batch norm, then a small dense head.

    About 18.7 million multiply-accumulates per 28x28 frame and ~0.45 MB as int8 (the lecture's:
    ~14 M and ~0.57 MB), but the 3x3 pairs see as far as a 5x5 with fewer weights, batch norm
    (folded into the convolutions at export) trains faster, and the dense head is 8x smaller.
    `bn_momentum` 0.9 for small sets: Keras' 0.99 needs ~500 steps before the moving statistics
    forget their start (mean 0, variance 1), more than a few hundred images give.
    """
    def block(filters: int) -> list:
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(momentum=bn_momentum), layers.ReLU(),
                layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(momentum=bn_momentum), layers.ReLU(), layers.MaxPooling2D(2)]

    return keras.Sequential(
        [keras.Input(shape=input_shape, name="image"), *block(32), *block(64), layers.Flatten(),
         layers.Dropout(0.3), layers.Dense(128, activation="relu"), layers.Dropout(0.3),
         layers.Dense(num_classes, activation="softmax")],
        name="cnn_compact",
    )


def recompute_batch_norm(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> int:
    """Set every batch-norm layer's moving mean and variance to the exact statistics of its input over
    `x` (in order, each layer seeing the corrected layers before it); returns how many were set.

    The moving averages lag behind the weights during training; on a small set they never catch up,
    and the exported model (which runs on them) is far worse than training suggested.
    """
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    for layer in norms:
        features = keras.Model(model.inputs, layer.input)
        total, squares, count = 0.0, 0.0, 0
        for start in range(0, len(x), batch_size):
            a = np.asarray(features(x[start:start + batch_size], training=False), np.float64)
            a = a.reshape(-1, a.shape[-1])
            total, squares, count = total + a.sum(axis=0), squares + (a * a).sum(axis=0), count + len(a)
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(squares / count - mean * mean, 0.0).astype(np.float32))
    return len(norms)


ARCHITECTURES = {"lecture": build_lecture_cnn, "compact": build_compact_cnn}
