"""The `default` generator: a small class-conditional DCGAN trained with AC-GAN losses.

Why this shape (docs/gan.md has the numbers):
- Label in, image out: the generator takes normal noise and a one-hot class vector. One-hot
  (not an integer index) keeps every input a float tensor, so the export's full-integer int8
  path applies unchanged (a one-hot row through a dense layer *is* an embedding lookup).
- Convolutional: dense -> 7x7 feature maps -> two stride-2 transposed convolutions with batch
  norm (DCGAN). The lecture's MLP draws each pixel independently of its neighbours, so its
  samples stay blurred and noisy; transposed convolutions share local structure.
- Auxiliary classifier (Odena et al., AC-GAN): the discriminator has a real/fake head and a
  class head; both networks are also trained to get the class right. That is what makes the
  committed CNN agree with the requested class; a projection discriminator conditions as well
  but gives no direct class signal to the generator, which matters with a few minutes of CPU.
- As in the lecture's GAN, one `train_step` applies each loss's gradients to an explicit
  variable list (discriminator first, then generator), so neither network can be frozen by
  accident (see training/models/gan.py).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from training.models.gan import GAN, LATENT_DIM, REAL_LABEL  # REAL_LABEL: the lecture's label smoothing


def build_conditional_generator(latent_dim: int, num_classes: int, side: int = 28, width: int = 64) -> keras.Model:
    """(noise, one-hot label) -> flat image in [-1, 1] of side*side pixels (side divisible by 4)."""
    if side % 4:
        raise ValueError(f"the conditional generator needs an image side divisible by 4, not {side}")
    base = side // 4
    noise = keras.Input(shape=(latent_dim,), name="noise")
    label = keras.Input(shape=(num_classes,), name="label")
    x = layers.Concatenate()([noise, label])
    x = layers.Dense(base * base * width, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((base, base, width))(x)
    x = layers.Conv2DTranspose(width // 2, 4, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh")(x)
    image = layers.Reshape((side * side,), name="image")(x)
    return keras.Model({"noise": noise, "label": label}, image, name="conditional_generator")


def build_ac_discriminator(num_classes: int, side: int = 28, width: int = 32) -> keras.Model:
    """Flat image -> (real/fake logit, class logits)."""
    image = keras.Input(shape=(side * side,), name="image")
    x = layers.Reshape((side, side, 1))(image)
    x = layers.Conv2D(width, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU(negative_slope=0.2)(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Conv2D(width * 2, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU(negative_slope=0.2)(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Flatten()(x)
    source = layers.Dense(1, name="source")(x)
    classes = layers.Dense(num_classes, name="classes")(x)
    return keras.Model(image, [source, classes], name="ac_discriminator")


class ACGAN(GAN):
    """Conditional generator + auxiliary-classifier discriminator, trained on (image, label) batches.
    Shares the lecture GAN's optimizers, trackers and `call`; its own losses and `train_step`."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int, num_classes: int,
                 class_weight: float = 1.0, ema_decay: float = 0.0) -> None:
        super().__init__(generator, discriminator, latent_dim)
        self.num_classes = num_classes
        self.class_weight = class_weight
        # An exponential moving average of the generator's weights (and batch-norm statistics) is
        # what gets exported: it smooths the step-to-step wobble of adversarial training for the
        # price of one copy of the generator (docs/gan.md has the numbers). 0 turns it off.
        self.ema_decay = ema_decay
        self.ema_generator: keras.Model | None = None
        if ema_decay:
            self.ema_generator = keras.models.clone_model(generator)
            self.ema_generator.set_weights(generator.get_weights())
        self.bce = keras.losses.BinaryCrossentropy(from_logits=True)
        self.cce = keras.losses.CategoricalCrossentropy(from_logits=True)
        self.class_acc = keras.metrics.CategoricalAccuracy(name="d_class_acc_generated")

    @property
    def metrics(self) -> list:
        return [self.d_loss_tracker, self.g_loss_tracker, self.class_acc]

    def _random_inputs(self, batch: tf.Tensor) -> dict[str, tf.Tensor]:
        classes = tf.random.uniform((batch,), 0, self.num_classes, dtype=tf.int32)
        return {"noise": tf.random.normal((batch, self.latent_dim)),
                "label": tf.one_hot(classes, self.num_classes)}

    def train_step(self, data: tuple[tf.Tensor, tf.Tensor]) -> dict:
        real, real_labels = data
        batch = tf.shape(real)[0]
        real_onehot = tf.one_hot(tf.cast(real_labels, tf.int32), self.num_classes)
        # Step 1 (discriminator): real images 0.9, generated 0; the class of both.
        inputs = self._random_inputs(batch)
        fake = self.generator(inputs, training=True)
        with tf.GradientTape() as tape:
            real_source, real_classes = self.discriminator(real, training=True)
            fake_source, fake_classes = self.discriminator(fake, training=True)
            d_loss = (self.bce(tf.fill((batch, 1), REAL_LABEL), real_source)
                      + self.bce(tf.zeros((batch, 1)), fake_source)
                      + self.class_weight * (self.cce(real_onehot, real_classes)
                                             + self.cce(inputs["label"], fake_classes)))
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, d_vars), d_vars))
        # Step 2 (generator through the discriminator): look real, and look like the requested class.
        inputs = self._random_inputs(batch)
        with tf.GradientTape() as tape:
            source, classes = self.discriminator(self.generator(inputs, training=True), training=True)
            g_loss = self.bce(tf.ones((batch, 1)), source) + self.class_weight * self.cce(inputs["label"], classes)
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars))
        if self.ema_generator is not None:
            for average, current in zip(self.ema_generator.weights, self.generator.weights, strict=True):
                average.assign(self.ema_decay * average + (1.0 - self.ema_decay) * current)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.class_acc.update_state(inputs["label"], classes)
        return {m.name: m.result() for m in self.metrics}


def build_acgan(num_classes: int, side: int = 28, latent_dim: int = LATENT_DIM, g_width: int = 64,
                d_width: int = 32, learning_rate: float = 2e-4, class_weight: float = 1.0,
                ema_decay: float = 0.0) -> ACGAN:
    """DCGAN's optimizers for both networks: Adam(2e-4, beta_1=0.5)."""
    gan = ACGAN(build_conditional_generator(latent_dim, num_classes, side, g_width),
                build_ac_discriminator(num_classes, side, d_width), latent_dim, num_classes, class_weight,
                 ema_decay)
    gan.compile(keras.optimizers.Adam(learning_rate, beta_1=0.5), keras.optimizers.Adam(learning_rate, beta_1=0.5))
    return gan
