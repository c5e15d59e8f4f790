"""The class-conditional generator's acceptance gates (issue 18), measured here from their definitions.

Independent of training/quality/gan.py on purpose: the images come from the edge's `Generator`
wrapper, the judge is the committed float32 CNN run through the edge runtime, and the Fréchet
distance is computed from eigenvalues (the training code uses a matrix square root). The space
is the one the issue's figures were measured in: log(p + 1e-6) of the CNN's class probabilities.
A mutation check makes sure the class-agreement gate can fail: the same generator with its label
input permuted or ignored must not pass it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edge.models.classifier import pixels_to_input
from edge.models.generator import Generator
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from tests.conftest import MODELS_DIR, requires_package
from training.datasets.images import load_image_dataset

MANIFEST = read_manifest(MODELS_DIR / "manifest.json")
pytestmark = requires_package("dataset-fashion-mnist")  # the real test images the samples are measured against
PER_CLASS = 200  # 2,000 samples in all, as many as real test images in the FD
FLOOR = 1e-6


def generator(name: str = "gan", seed: int = 0) -> Generator:
    entry = MANIFEST.get(name)
    return Generator(entry, TFLiteModel.from_entry(entry, MODELS_DIR), seed=seed)


@pytest.fixture(scope="module")
def judge() -> Callable[[np.ndarray], np.ndarray]:
    """uint8 images -> the float32 CNN's class probabilities, one invoke each."""
    entry = MANIFEST.get("cnn_float32")
    model = TFLiteModel.from_entry(entry, MODELS_DIR)
    pre = entry.preprocess
    x_name, y_name = entry.inputs[0].name, entry.outputs[0].name

    def probabilities(images: np.ndarray) -> np.ndarray:
        feeds = (pixels_to_input(image.astype(np.float32), pre)[None, :, :, None] for image in images)
        return np.stack([model.run({x_name: x})[y_name][0] for x in feeds])

    return probabilities


@pytest.fixture(scope="module")
def real_space(judge: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    images = load_image_dataset(MANIFEST.get("cnn").dataset).x_test[:10 * PER_CLASS]
    return np.log(judge(images).astype(np.float64) + FLOOR)


def frechet_by_eigenvalues(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 sum sqrt(eig(C_a C_b)) (the eigenvalues are real, >= 0)."""
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eigenvalues = np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0)
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * np.sqrt(eigenvalues).sum())


def samples(gen: Generator, requested: np.ndarray, relabel: Callable[[int], int] = lambda c: c) -> np.ndarray:
    """One image per requested class, fed to the generator as `relabel(class)`; seeded noise."""
    rng = np.random.default_rng(42)
    latent = gen.entry.preprocess["latent_dim"]
    return np.stack([gen.generate(rng.normal(size=latent).astype(np.float32), relabel(int(c))) for c in requested])


def agreement(predicted: np.ndarray, requested: np.ndarray) -> float:
    """The share of samples asked for class c that the CNN classifies as c."""
    return float(np.mean(predicted == requested))


BALANCED = np.repeat(np.arange(10), PER_CLASS)


@pytest.fixture(scope="module")
def measured(judge: Callable[[np.ndarray], np.ndarray], real_space: np.ndarray) -> dict[str, dict]:
    out = {}
    for name in ("gan", "gan_float32"):
        probs = judge(samples(generator(name), BALANCED)).astype(np.float64)
        predicted = probs.argmax(axis=1)
        out[name] = {"fd": frechet_by_eigenvalues(np.log(probs + FLOOR), real_space),
                     "agreement": agreement(predicted, BALANCED),
                     "per_class": [agreement(predicted[BALANCED == c], BALANCED[BALANCED == c]) for c in range(10)]}
    return out


def test_manifest_says_the_generator_takes_a_class_label() -> None:
    entry = MANIFEST.get("gan")
    pre = entry.preprocess
    assert pre["label_input"] == "label" and pre["num_classes"] == 10 and pre["label_encoding"] == "one_hot"
    assert pre["labels"] == MANIFEST.get("cnn").postprocess["labels"]  # the same class order as the judge
    assert list(entry.input("label").shape) == [1, 10] and list(entry.input("noise").shape) == [1, pre["latent_dim"]]


def test_int8_generator_keeps_the_float_generators_quality(measured: dict[str, dict]) -> None:
    int8, f32 = measured["gan"], measured["gan_float32"]
    assert abs(int8["fd"] - f32["fd"]) <= 0.10 * f32["fd"]
    # the manifest's figure (other samples, uniformly drawn labels, matrix square root) agrees
    assert int8["fd"] == pytest.approx(MANIFEST.get("gan").metrics["frechet"], rel=0.25, abs=1.0)
    # far nearer to real images than the dense GAN (156) and heavily noised photographs (178)
    assert int8["fd"] < 100


def test_int8_generator_meets_the_fd_target(measured: dict[str, dict]) -> None:
    """Issue 18's target, untruncated (latent_scale 1: the noise the generator was trained on; docs/gan.md)."""
    assert MANIFEST.get("gan").preprocess.get("latent_scale", 1.0) == 1.0
    assert measured["gan"]["fd"] <= 20.0


def test_int8_generator_draws_the_class_it_is_asked_for(measured: dict[str, dict]) -> None:
    int8 = measured["gan"]
    assert int8["agreement"] >= 0.90
    assert min(int8["per_class"]) >= 0.5  # no class is drawn as another most of the time
    assert int8["agreement"] == pytest.approx(MANIFEST.get("gan").metrics["class_agreement"], abs=0.03)


def test_uniformly_drawn_labels_cover_every_class(judge: Callable[[np.ndarray], np.ndarray]) -> None:
    gen = generator(seed=7)
    drawn = np.array([gen.draw_label() for _ in range(10 * PER_CLASS)])
    images = samples(generator(seed=7), drawn, relabel=lambda c: c)
    shares = np.bincount(judge(images).argmax(axis=1), minlength=10) / len(drawn)
    assert shares.min() >= 0.08
    # label=None draws the same seeded sequence as draw_label()
    again, rng = generator(seed=7), np.random.default_rng(42)
    first = again.generate(rng.normal(size=again.entry.preprocess["latent_dim"]).astype(np.float32))
    assert np.array_equal(first, images[0])


@pytest.mark.parametrize("mutation", ["permuted", "ignored"])
def test_a_generator_that_does_not_follow_its_label_fails_the_gate(
        mutation: str, judge: Callable[[np.ndarray], np.ndarray]) -> None:
    requested = np.repeat(np.arange(10), 30)
    relabel = (lambda c: (c + 3) % 10) if mutation == "permuted" else (lambda c: 0)
    predicted = judge(samples(generator(), requested, relabel)).argmax(axis=1)
    assert agreement(predicted, requested) < 0.90
    honest = judge(samples(generator(), requested)).argmax(axis=1)
    assert agreement(honest, requested) >= 0.90  # the same samples, honestly labelled, pass
