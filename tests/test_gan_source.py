"""The generator as a labelled camera, without a broker: the `gan:` source's options, the frames it
gives, and the manifest's `latent_scale` (truncation) as the edge applies it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge.models.generator import Generator
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.sources import camera_source, gan_options
from edge.sources.frames import GeneratorSource, make_frame_source
from tests.conftest import MODELS_DIR

MANIFEST = read_manifest(MODELS_DIR / "manifest.json")
LABELS = MANIFEST.get("gan").preprocess["labels"]


def generator(**preprocess: object) -> Generator:
    entry = MANIFEST.get("gan")
    entry = dataclasses.replace(entry, preprocess={**entry.preprocess, **preprocess})
    return Generator(entry, TFLiteModel.from_entry(entry, MODELS_DIR))


def test_gan_source_options_are_checked_where_the_config_is() -> None:
    assert gan_options("classes=0,1,2,rate=5") == gan_options(" rate=5 , classes=0,1,2")
    assert gan_options("classes=7,seed=3").classes == (7,) and gan_options("").classes == ()
    for bad, says in [("classes=a", "integers"), ("colour=1", "unknown option 'colour'"), ("3", "belongs to no"),
                      ("rate=0", "rate must be"), ("rate=inf", "rate must be"), ("classes=-1", "class indices >= 0"),
                      ("classes=1,rate=2,rate=3", "repeated option 'rate'"), ("seed=-4", "seed must be"),
                      ("classes=1,,2", "integers")]:
        with pytest.raises(ValueError, match=says):
            camera_source(f"gan:{bad}")


def test_frames_carry_the_class_asked_for_in_turn_and_are_seeded() -> None:
    source = make_frame_source(camera_source("gan:classes=9,0,rate=5,seed=4"), generator=generator())
    assert isinstance(source, GeneratorSource) and source.rate == 5.0
    frames = [source.read() for _ in range(5)]
    assert [f.truth for f in frames] == [LABELS[9], LABELS[0]] * 2 + [LABELS[9]] and [f.seq for f in frames] == [
        1, 2, 3, 4, 5]
    again = make_frame_source(camera_source("gan:classes=9,0,seed=4"), generator=generator())
    assert all(np.array_equal(f.image, again.read().image) for f in frames)  # the same seed, the same frames
    other = make_frame_source(camera_source("gan:classes=9,0,seed=5"), generator=generator())
    assert not np.array_equal(frames[0].image, other.read().image)
    # no classes asked for: drawn uniformly, still labelled
    drawn = make_frame_source(camera_source("gan"), generator=generator())
    assert len({drawn.read().truth for _ in range(40)}) >= 5


def test_a_class_the_generator_cannot_draw_is_refused() -> None:
    with pytest.raises(ValueError, match="class 10 is out of range: model 'gan' has 10 classes"):
        make_frame_source(camera_source("gan:classes=3,10"), generator=generator())


def test_the_edge_applies_the_manifests_latent_scale() -> None:
    noise = np.random.default_rng(0).normal(size=100).astype(np.float32)
    truncated, plain = generator(latent_scale=0.5), generator(latent_scale=1.0)
    assert np.array_equal(truncated.generate(noise, 3), plain.generate(noise * np.float32(0.5), 3))
    assert not np.array_equal(truncated.generate(noise, 3), plain.generate(noise, 3))
    for bad in (0, -1, float("nan"), True, "0.8", 11):
        with pytest.raises(ValueError, match="latent_scale must be a number in"):
            generator(latent_scale=bad)
