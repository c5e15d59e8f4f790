"""The four builders: the lecture's shapes, and the training mechanics that fail silently when wrong."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.models.autoencoder import build_autoencoder
from training.models.cgan import build_acgan
from training.models.cnn import build_lecture_cnn
from training.models.gan import build_gan
from training.models.lstm import ResetStatesEachEpoch, build_stateful_lstm, build_step_model


def test_lecture_cnn_layers_and_shapes() -> None:
    model = build_lecture_cnn((28, 28, 1), 10)
    assert model.output_shape == (None, 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 128, 64] and all(c.kernel_size == (5, 5) for c in convs)
    assert [d.units for d in model.layers if isinstance(d, keras.layers.Dense)] == [1024, 10]
    # 28 -same-> 28 -pool-> 14 -5x5-> 10 -> 6 -> 2 -pool-> 1: the flatten sees 64 features
    assert model.layers[5].output.shape[1:] == (1, 1, 64)
    probs = model(np.zeros((2, 28, 28, 1), np.float32))
    assert np.allclose(np.sum(probs, axis=1), 1.0, atol=1e-5)


def test_autoencoder_is_32_16_32_with_tanh_output() -> None:
    model = build_autoencoder(2)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [32, 16, 32, 2]
    assert dense[-1].activation.__name__ == "tanh"
    out = model(np.full((3, 2), 100.0, np.float32))
    assert np.all(np.abs(out) <= 1.0)


def test_gan_shapes() -> None:
    gan = build_gan()
    assert gan.generator.input_shape == (None, 100) and gan.generator.output_shape == (None, 784)
    assert [d.units for d in gan.discriminator.layers if isinstance(d, keras.layers.Dense)] == [1024, 512, 256, 1]
    assert sum(isinstance(d, keras.layers.Dropout) for d in gan.discriminator.layers) == 2


def test_gan_step_trains_both_networks() -> None:
    """The Keras 3 pitfall: a frozen-then-compiled discriminator silently stops learning."""
    keras.utils.set_random_seed(0)
    gan = build_gan()
    before_d = [w.copy() for w in gan.discriminator.get_weights()]
    before_g = [w.copy() for w in gan.generator.get_weights()]
    gan.train_step(tf.random.uniform((16, 784), -1, 1))
    changed_d = [not np.allclose(a, b) for a, b in zip(before_d, gan.discriminator.get_weights())]
    changed_g = [not np.allclose(a, b) for a, b in zip(before_g, gan.generator.get_weights())]
    assert all(changed_d) and all(changed_g)


def test_conditional_gan_shapes_and_its_label_changes_the_image() -> None:
    keras.utils.set_random_seed(0)
    gan = build_acgan(num_classes=10)
    noise = np.random.default_rng(0).normal(size=(2, 100)).astype(np.float32)
    labels = np.eye(10, dtype=np.float32)[[3, 3]]
    images = np.asarray(gan.generator({"noise": noise, "label": labels}))
    assert images.shape == (2, 784) and np.all(np.abs(images) <= 1.0)
    other = np.asarray(gan.generator({"noise": noise, "label": np.eye(10, dtype=np.float32)[[3, 7]]}))
    assert np.allclose(other[0], images[0]) and not np.allclose(other[1], images[1], atol=1e-4)
    source, classes = gan.discriminator(images)
    assert source.shape == (2, 1) and classes.shape == (2, 10)
    assert any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in gan.generator.layers)


def test_conditional_gan_step_trains_both_networks() -> None:
    keras.utils.set_random_seed(0)
    gan = build_acgan(num_classes=10)
    before_d = [np.array(w) for w in gan.discriminator.trainable_weights]
    before_g = [np.array(w) for w in gan.generator.trainable_weights]
    gan.train_step((tf.random.uniform((16, 784), -1, 1), tf.range(16) % 10))
    assert all(not np.allclose(a, np.array(b)) for a, b in zip(before_d, gan.discriminator.trainable_weights))
    assert all(not np.allclose(a, np.array(b)) for a, b in zip(before_g, gan.generator.trainable_weights))


def test_step_model_reproduces_the_stateful_model() -> None:
    keras.utils.set_random_seed(0)
    model = build_stateful_lstm(units=4, look_back=5)
    windows = np.random.default_rng(0).random((12, 5, 1)).astype(np.float32)
    expected = model.predict(windows, batch_size=1, verbose=0).ravel()
    step = build_step_model(model)
    h = c = np.zeros((1, 4), np.float32)
    got = []
    for w in windows:
        out = step({"x": w[None], "h": h, "c": c})
        got.append(float(out["y"][0, 0]))
        h, c = np.asarray(out["h_out"]), np.asarray(out["c_out"])
    assert np.allclose(got, expected, atol=1e-5)
    # and the state matters: starting each step cold gives different forecasts
    cold = [float(step({"x": w[None], "h": np.zeros((1, 4)), "c": np.zeros((1, 4))})["y"][0, 0]) for w in windows]
    assert not np.allclose(cold[1:], expected[1:], atol=1e-4)


def test_reset_callback_clears_the_lstm_state() -> None:
    model = build_stateful_lstm(units=4, look_back=5)
    model.compile(loss="mse", optimizer="adam")
    x = np.random.default_rng(1).random((6, 5, 1)).astype(np.float32)
    model.fit(x, np.zeros(6), epochs=1, batch_size=1, shuffle=False, verbose=0, callbacks=[ResetStatesEachEpoch()])
    states = [np.asarray(s) for s in model.get_layer("lstm").states]
    assert all(np.all(s == 0) for s in states)
    model.fit(x, np.zeros(6), epochs=1, batch_size=1, shuffle=False, verbose=0)
    assert any(np.any(np.asarray(s) != 0) for s in model.get_layer("lstm").states)


def test_autoencoder_with_a_code_layer_is_a_bottleneck() -> None:
    model = build_autoencoder(2, code_units=1)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [32, 16, 1, 16, 32, 2]
    assert model.get_layer("code").activation.__name__ == "linear"
