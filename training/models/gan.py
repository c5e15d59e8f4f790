"""The lecture's MLP GAN (generator 100-256-512-784, discriminator 1024-512-256-1) as one Keras model.

The lecture alternates `discriminator.train_on_batch` and `gan.train_on_batch` while
toggling `discriminator.trainable`. In Keras 3 that toggle is easy to get wrong (a
discriminator compiled once and then frozen silently stops learning). We keep the
lecture's two steps, labels and optimizers, but write them as one `train_step` that
applies each loss's gradients to an explicit variable list, so neither network can be
frozen by accident; `tests/test_builders.py` checks that one step moves both.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

LATENT_DIM = 100
REAL_LABEL = 0.9  # the lecture's one-sided label smoothing


def build_generator(latent_dim: int = LATENT_DIM, pixels: int = 784) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,), name="noise"),
            layers.Dense(256),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dense(512),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dense(pixels, activation="tanh"),
        ],
        name="generator",
    )


def build_discriminator(pixels: int = 784) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(shape=(pixels,), name="image"),
            layers.Dense(1024),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dropout(0.3),
            layers.Dense(512),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dropout(0.3),
            layers.Dense(256),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="discriminator",
    )


class GAN(keras.Model):
    """Generator + discriminator trained with the lecture's alternating steps."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int = LATENT_DIM) -> None:
        super().__init__(name="gan")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.bce = keras.losses.BinaryCrossentropy()
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    def compile(self, d_optimizer: keras.optimizers.Optimizer, g_optimizer: keras.optimizers.Optimizer) -> None:
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    @property
    def metrics(self) -> list:
        return [self.d_loss_tracker, self.g_loss_tracker]

    def call(self, noise: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.discriminator(self.generator(noise, training=training), training=training)

    def train_step(self, real: tf.Tensor) -> dict:
        batch = tf.shape(real)[0]
        # Step 1 (discriminator): real images labelled 0.9, generated ones 0.
        noise = tf.random.normal((batch, self.latent_dim))
        fake = self.generator(noise, training=False)
        images = tf.concat([real, fake], axis=0)
        labels = tf.concat([tf.fill((batch, 1), REAL_LABEL), tf.zeros((batch, 1))], axis=0)
        with tf.GradientTape() as tape:
            d_loss = self.bce(labels, self.discriminator(images, training=True))
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, d_vars), d_vars))
        # Step 2 (generator through the frozen discriminator): fresh noise labelled 1.
        noise = tf.random.normal((batch, self.latent_dim))
        with tf.GradientTape() as tape:
            g_loss = self.bce(tf.ones((batch, 1)),
                              self.discriminator(self.generator(noise, training=True), training=True))
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {m.name: m.result() for m in self.metrics}


def build_gan(latent_dim: int = LATENT_DIM, pixels: int = 784, d_lr: float = 2e-4, g_lr: float = 1e-3) -> GAN:
    """The lecture's optimizers: Adam(2e-4, beta_1=0.5) for D; the GAN was compiled with plain 'adam' (1e-3)."""
    gan = GAN(build_generator(latent_dim, pixels), build_discriminator(pixels), latent_dim)
    gan.compile(keras.optimizers.Adam(d_lr, beta_1=0.5), keras.optimizers.Adam(g_lr))
    return gan
