"""GAN: train the generator (`conditional` by default, the lecture's dense GAN in the `lecture`
profile), export it, draw sample grids as it learns and measure it with the committed CNN."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm.keras import TqdmCallback

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from training import plots
from training.datasets.images import ImageDataset, load_image_dataset
from training.evaluation import generated_images
from training.export import ExportRequest, export_both
from training.gan_quality import GeneratorSpec, Judge, grid_inputs, measure
from training.models import cgan
from training.models.gan import LATENT_DIM, build_gan
from training.profiles import GANConfig
from training.tasks import TaskResult, set_seed

log = logging.getLogger(__name__)
PIXEL_OFFSET = PIXEL_SCALE = 127.5  # the lecture's (x - 127.5) / 127.5, matching the tanh output
Feeds = dict[str, np.ndarray]


def to_images(flat: np.ndarray, side: int = 28) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 images."""
    post = {"pixel_scale": PIXEL_SCALE, "pixel_offset": PIXEL_OFFSET, "height": side, "width": side}
    return generated_images(flat, post)


def calibration_inputs(latent_dim: int, num_classes: int | None, count: int, seed: int) -> Feeds:
    """Representative data for int8 calibration: normal noise and, if conditional, every class in turn."""
    feeds = {"noise": np.random.default_rng(seed).normal(size=(count, latent_dim)).astype(np.float32)}
    if num_classes:
        feeds["label"] = np.eye(num_classes, dtype=np.float32)[np.arange(count) % num_classes]
    return feeds


def one_at_a_time(feeds: Feeds) -> Iterator[Feeds]:
    """Batch of inputs -> one batch-1 feed dict per sample (representative data, parity checks)."""
    count = len(next(iter(feeds.values())))
    return ({k: v[i:i + 1] for k, v in feeds.items()} for i in range(count))


class SampleGrid(keras.callbacks.Callback):
    """The lecture's plot_generated_images: a grid on the first epoch and every `every` epochs."""

    def __init__(self, inputs: Feeds, every: int, folder: Path, captions: list[str] | None) -> None:
        super().__init__()
        self.every, self.folder, self.captions = every, folder, captions
        self.feed = inputs if "label" in inputs else inputs["noise"]
        self.paths: list[Path] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        number = epoch + 1
        if number == 1 or number % self.every == 0 or number == self.params.get("epochs"):
            generator = getattr(self.model, "ema_generator", None) or self.model.generator
            images = to_images(generator(self.feed, training=False))
            self.paths.append(plots.image_grid(images, self.folder / f"gan_epoch_{number:03d}.png",
                                               f"GAN samples, epoch {number}", self.captions))


def judge_for(out_dir: Path, dataset: str) -> Callable[[], Judge] | None:
    """The committed CNN as the generator's judge (training/gan_quality.py), built on first use,
    when the manifest in `out_dir` has a CNN trained on the same dataset; None (and a warning) otherwise."""
    path = out_dir / "manifest.json"
    manifest = read_manifest(path) if path.exists() else None
    if manifest is None or "cnn_float32" not in manifest.models or manifest.get("cnn").dataset != dataset:
        log.warning("no CNN trained on %s in %s: the generator's FD and class agreement are not measured",
                    dataset, out_dir)
        return None
    return functools.cache(lambda: Judge(manifest, out_dir))


def train_lecture(cfg: GANConfig, data: ImageDataset, real: np.ndarray, steps: int,
                  grids: SampleGrid) -> tuple[keras.Model, keras.Model, dict]:
    dataset = (tf.data.Dataset.from_tensor_slices(real).shuffle(len(real), seed=cfg.seed).repeat()
               .batch(cfg.batch_size, drop_remainder=True).prefetch(2))
    gan = build_gan(LATENT_DIM, real.shape[1])
    history = gan.fit(dataset, epochs=cfg.epochs, steps_per_epoch=steps, verbose=0,
                      callbacks=[grids, TqdmCallback(verbose=0, desc="GAN epochs")])
    return gan.generator, lambda x: gan.discriminator(x, training=False), history.history


def train_conditional(cfg: GANConfig, data: ImageDataset, real: np.ndarray, steps: int,
                      grids: SampleGrid) -> tuple[keras.Model, Callable, dict]:
    dataset = (tf.data.Dataset.from_tensor_slices((real, data.y_train.astype(np.int32)))
               .shuffle(len(real), seed=cfg.seed).repeat()
               .batch(cfg.batch_size, drop_remainder=True).prefetch(2))
    gan = cgan.build_acgan(data.num_classes, data.x_train.shape[1], LATENT_DIM, cfg.g_width, cfg.d_width,
                           cfg.learning_rate, cfg.class_weight, cfg.ema_decay)
    history = gan.fit(dataset, epochs=cfg.epochs, steps_per_epoch=steps, verbose=0,
                      callbacks=[grids, TqdmCallback(verbose=0, desc="GAN epochs")])
    generator = gan.ema_generator or gan.generator  # the weight average is what gets exported
    return generator, lambda x: tf.sigmoid(gan.discriminator(x, training=False)[0]), history.history


def run(cfg: GANConfig, out_dir: Path, report_dir: Path, profile: str) -> TaskResult:
    set_seed(cfg.seed)
    data = load_image_dataset(cfg.dataset).subset(cfg.train_limit)
    side = data.x_train.shape[1]
    conditional = cfg.arch == "conditional"
    if cfg.arch not in ("conditional", "lecture"):
        raise ValueError(f"unknown GAN arch {cfg.arch!r}: use conditional or lecture")
    real = ((data.x_train.astype(np.float32) - PIXEL_OFFSET) / PIXEL_SCALE).reshape(len(data.x_train), -1)
    steps = cfg.steps_per_epoch or len(real) // cfg.batch_size
    classes = data.num_classes if conditional else None
    grid = grid_inputs(LATENT_DIM, classes, cfg.seed)
    grid["noise"] *= np.float32(cfg.latent_scale)  # as the edge feeds it (Generator: noise x latent_scale)
    # a conditional grid names each row's class over its first picture
    captions = [data.labels[i // 10] if i % 10 == 0 else "" for i in range(100)] if conditional else None
    grids = SampleGrid(grid, cfg.sample_every, report_dir / "gan", captions)
    train = train_conditional if conditional else train_lecture
    generator, discriminate, history = train(cfg, data, real, steps, grids)
    keras_feed = grid if conditional else grid["noise"]
    keras_samples = np.asarray(generator(keras_feed, training=False))
    keras_metrics = {"discriminator_on_real": float(np.mean(discriminate(real[:1000]))),
                     "discriminator_on_generated": float(np.mean(discriminate(keras_samples)))}
    calib = calibration_inputs(LATENT_DIM, classes, 500, cfg.seed + 1)
    judge = judge_for(out_dir, data.name)
    sample_paths: dict[str, Path] = {}
    rows = "one row per requested class" if conditional else "100 samples"
    inputs = {"noise": (1, LATENT_DIM), **({"label": (1, classes)} if conditional else {})}
    preprocess: dict[str, Any] = {"latent_dim": LATENT_DIM, "distribution": "normal(0, 1)",
                                  "latent_scale": cfg.latent_scale}
    if conditional:
        preprocess.update({"label_input": "label", "label_encoding": "one_hot", "num_classes": classes,
                           "labels": data.labels})
    request = ExportRequest(
        name="gan", task="generate", model=generator, inputs=inputs, outputs=["image"],
        representative=lambda: one_at_a_time(calib),
        preprocess=preprocess,
        postprocess={"height": side, "width": side, "pixel_offset": PIXEL_OFFSET, "pixel_scale": PIXEL_SCALE,
                     "labels": data.labels, "note": "pixel = output * pixel_scale + pixel_offset"},
        dataset=data.name, training={"profile": profile, **dataclasses.asdict(cfg), "steps_per_epoch": steps},
        parity_tolerance={"image": 0.02},
    )

    def evaluate(tfl: TFLiteModel) -> dict:
        samples = np.concatenate([tfl.run(feeds)["image"] for feeds in one_at_a_time(grid)])
        path = plots.image_grid(to_images(samples, side), report_dir / f"{tfl.path.stem}_samples.png",
                                f"{tfl.path.name}: {rows}", captions)
        sample_paths[tfl.path.name] = path
        return {"mean_abs_diff_vs_keras": float(np.mean(np.abs(samples - keras_samples))),
                "discriminator_on_generated": float(np.mean(discriminate(samples))),
                "sample_grid": path.name,
                **(measure(tfl, GeneratorSpec(request.preprocess, request.postprocess), judge()) if judge else {})}

    entries = export_both(request, out_dir, lambda: one_at_a_time(grid), evaluate, keras_metrics)
    quant, twin = entries[0].metrics, entries[1].metrics
    if "frechet" in quant and "frechet" in twin:
        quant["frechet_ratio_vs_float32"] = quant["frechet"] / twin["frechet"]
    pictures = [plots.training_curves(history, "GAN losses", report_dir / "gan_training.png"),
                *grids.paths, *sample_paths.values()]
    figures = {"sample_grid": str(sample_paths[entries[0].file]), "keras": keras_metrics,
               "int8": entries[0].metrics, "epochs": cfg.epochs, "steps_per_epoch": steps}
    return TaskResult("gan", entries, figures, pictures)
