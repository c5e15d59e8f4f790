"""GAN: train the generator (`conditional` by default, the lecture's dense GAN in the `lecture`
profile), export it, draw sample grids as it learns and measure it with the committed CNN."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from training.export import ExportRequest, export_both
from training.models import cgan
from training.models.gan import LATENT_DIM, build_gan
from training.quality.evaluation import generated_images
from training.quality.gan import GeneratorSpec, Judge, grid_inputs, measure
from training.tasks.base import Task, TaskResult, set_seed

log = logging.getLogger(__name__)
PIXEL_OFFSET = PIXEL_SCALE = 127.5  # the lecture's (x - 127.5) / 127.5, matching the tanh output
Feeds = dict[str, np.ndarray]


@dataclass
class GANConfig:
    dataset: str = "fashion_mnist"
    # "conditional": label in, image out -- a small DCGAN with an auxiliary-classifier discriminator
    # (training/models/cgan.py); "lecture": the lecture's dense, unconditional GAN (training/models/gan.py)
    arch: str = "conditional"
    epochs: int = 30
    batch_size: int = 128
    steps_per_epoch: int | None = None  # None: a full pass over the training images
    sample_every: int = 5  # epochs between sample grids
    train_limit: int | None = None
    # conditional only: filters of the generator's 7x7 maps / the discriminator's first conv, Adam's rate
    g_width: int = 64
    d_width: int = 32
    learning_rate: float = 2e-4
    class_weight: float = 1.0  # weight of the class losses beside the real/fake losses
    ema_decay: float = 0.0  # conditional only: export an exponential moving average of the generator's weights
    # the sd of the noise the edge feeds (manifest `preprocess.latent_scale`): < 1 is the truncation trick
    # (BigGAN): typical samples for some variety; the edge's Generator applies it (docs/gan.md)
    latent_scale: float = 1.0
    seed: int = 1


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
        self.inputs = inputs
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
    """The committed CNN as the generator's judge (training/quality/gan.py), built on first use,
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


def sample_grids(cfg: GANConfig, data: ImageDataset, conditional: bool, report_dir: Path) -> SampleGrid:
    """The grids drawn as it learns, fed as the edge feeds the generator (noise x latent_scale); a
    conditional grid names each row's class over its first picture."""
    grid = grid_inputs(LATENT_DIM, data.num_classes if conditional else None, cfg.seed)
    grid["noise"] *= np.float32(cfg.latent_scale)  # as the edge feeds it (Generator: noise x latent_scale)
    captions = [data.labels[i // 10] if i % 10 == 0 else "" for i in range(100)] if conditional else None
    return SampleGrid(grid, cfg.sample_every, report_dir / "gan", captions)


def export_request(cfg: GANConfig, data: ImageDataset, generator: keras.Model, conditional: bool, steps: int,
                   profile: str) -> ExportRequest:
    """The generator's manifest entry (a conditional one also takes a one-hot class), calibrated on
    500 noise vectors (and every class in turn)."""
    classes = data.num_classes if conditional else None
    calib = calibration_inputs(LATENT_DIM, classes, 500, cfg.seed + 1)
    side = data.x_train.shape[1]
    preprocess: dict[str, Any] = {"latent_dim": LATENT_DIM, "distribution": "normal(0, 1)",
                                  "latent_scale": cfg.latent_scale}
    if conditional:
        preprocess.update({"label_input": "label", "label_encoding": "one_hot", "num_classes": classes,
                           "labels": data.labels})
    return ExportRequest(
        name="gan", task="generate", model=generator,
        inputs={"noise": (1, LATENT_DIM), **({"label": (1, classes)} if conditional else {})}, outputs=["image"],
        representative=lambda: one_at_a_time(calib),
        preprocess=preprocess,
        postprocess={"height": side, "width": side, "pixel_offset": PIXEL_OFFSET, "pixel_scale": PIXEL_SCALE,
                     "labels": data.labels, "note": "pixel = output * pixel_scale + pixel_offset"},
        dataset=data.name, training={"profile": profile, **dataclasses.asdict(cfg), "steps_per_epoch": steps},
        parity_tolerance={"image": 0.02},
    )


def run(cfg: GANConfig, out_dir: Path, report_dir: Path, profile: str) -> TaskResult:
    set_seed(cfg.seed)
    data = load_image_dataset(cfg.dataset).subset(cfg.train_limit)
    conditional = cfg.arch == "conditional"
    if cfg.arch not in ("conditional", "lecture"):
        raise ValueError(f"unknown GAN arch {cfg.arch!r}: use conditional or lecture")
    real = ((data.x_train.astype(np.float32) - PIXEL_OFFSET) / PIXEL_SCALE).reshape(len(data.x_train), -1)
    steps = cfg.steps_per_epoch or len(real) // cfg.batch_size
    grids = sample_grids(cfg, data, conditional, report_dir)
    train = train_conditional if conditional else train_lecture
    generator, discriminate, history = train(cfg, data, real, steps, grids)
    grid = grids.inputs
    keras_samples = np.asarray(generator(grid if conditional else grid["noise"], training=False))
    keras_metrics = {"discriminator_on_real": float(np.mean(discriminate(real[:1000]))),
                     "discriminator_on_generated": float(np.mean(discriminate(keras_samples)))}
    request = export_request(cfg, data, generator, conditional, steps, profile)
    judge = judge_for(out_dir, data.name)
    sample_paths: dict[str, Path] = {}
    rows = "one row per requested class" if conditional else "100 samples"

    def evaluate(tfl: TFLiteModel) -> dict:
        samples = np.concatenate([tfl.run(feeds)["image"] for feeds in one_at_a_time(grid)])
        path = plots.image_grid(to_images(samples, data.x_train.shape[1]),
                                report_dir / f"{tfl.path.stem}_samples.png", f"{tfl.path.name}: {rows}", grids.captions)
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
    return TaskResult(entries, pictures)


# The lecture's GAN loop runs range(batch_size) = 128 steps per epoch for 400 epochs. The default,
# conditional GAN: 12 passes at batch 64 (11,244 steps), class losses x2, the generator's weight
# average exported, no truncation: 7.6 CPU-minutes for the whole task (docs/gan.md).
TASK = Task(
    "gan", GANConfig,
    profiles={"lecture": GANConfig(arch="lecture", epochs=400, steps_per_epoch=128, sample_every=20),
              "default": GANConfig(epochs=12, batch_size=64, sample_every=1, class_weight=2.0, ema_decay=0.999),
              "quick": GANConfig(epochs=2, steps_per_epoch=50, sample_every=1, train_limit=6400)},
    run=run, datasets="fashion_mnist[:DIR], mnist[:DIR], digits, folder:DIR",
    order=30,  # after the CNN: the generator is judged by the CNN of the same export (judge_for)
)
