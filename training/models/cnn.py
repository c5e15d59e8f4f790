"""The lecture's CNN: Conv(32,5x5,same)-MaxPool-Conv(64)-Conv(128)-Conv(64)-MaxPool-Dense(1024)-Dropout-Dense."""

from __future__ import annotations

import keras
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


ARCHITECTURES = {"lecture": build_lecture_cnn}
