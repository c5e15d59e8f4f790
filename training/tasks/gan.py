"""GAN: train the lecture's MLP GAN, export the generator, draw sample grids as it learns."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.keras import TqdmCallback

from edge.runtime import TFLiteModel
from training import plots
from training.datasets.images import load_image_dataset
from training.evaluation import generated_images
from training.export import ExportRequest, export_both
from training.models.gan import LATENT_DIM, build_gan
from training.profiles import GANConfig
from training.tasks import TaskResult, set_seed
from training.tflite import run_batch

log = logging.getLogger(__name__)
PIXEL_OFFSET = PIXEL_SCALE = 127.5  # the lecture's (x - 127.5) / 127.5, matching the tanh output


def to_images(flat: np.ndarray, side: int = 28) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 images."""
    post = {"pixel_scale": PIXEL_SCALE, "pixel_offset": PIXEL_OFFSET, "height": side, "width": side}
    return generated_images(flat, post)


class SampleGrid(keras.callbacks.Callback):
    """The lecture's plot_generated_images: a 10x10 grid on the first epoch and every `every` epochs."""

    def __init__(self, noise: np.ndarray, every: int, folder: Path) -> None:
        super().__init__()
        self.noise, self.every, self.folder = noise, every, folder
        self.paths: list[Path] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        number = epoch + 1
        if number == 1 or number % self.every == 0 or number == self.params.get("epochs"):
            images = to_images(self.model.generator(self.noise, training=False))
            self.paths.append(plots.image_grid(images, self.folder / f"gan_epoch_{number:03d}.png",
                                               f"GAN samples, epoch {number}"))


def run(cfg: GANConfig, out_dir: Path, report_dir: Path, profile: str) -> TaskResult:
    set_seed(cfg.seed)
    data = load_image_dataset(cfg.dataset).subset(cfg.train_limit)
    side = data.x_train.shape[1]
    real = ((data.x_train.astype(np.float32) - PIXEL_OFFSET) / PIXEL_SCALE).reshape(len(data.x_train), -1)
    steps = cfg.steps_per_epoch or len(real) // cfg.batch_size
    dataset = (tf.data.Dataset.from_tensor_slices(real).shuffle(len(real), seed=cfg.seed).repeat()
               .batch(cfg.batch_size, drop_remainder=True).prefetch(2))
    gan = build_gan(LATENT_DIM, real.shape[1])
    noise = np.random.default_rng(cfg.seed).normal(size=(100, LATENT_DIM)).astype(np.float32)
    grids = SampleGrid(noise, cfg.sample_every, report_dir / "gan")
    history = gan.fit(dataset, epochs=cfg.epochs, steps_per_epoch=steps, verbose=0,
                      callbacks=[grids, TqdmCallback(verbose=0, desc="GAN epochs")])
    keras_samples = np.asarray(gan.generator(noise, training=False))
    d_real = float(np.mean(gan.discriminator(real[:1000], training=False)))
    keras_metrics = {"discriminator_on_real": d_real,
                     "discriminator_on_generated": float(np.mean(gan.discriminator(keras_samples, training=False)))}
    calib = np.random.default_rng(cfg.seed + 1).normal(size=(500, LATENT_DIM)).astype(np.float32)
    sample_paths: dict[str, Path] = {}

    def evaluate(tfl: TFLiteModel) -> dict:
        samples = run_batch(tfl, "noise", noise)["image"]
        path = plots.image_grid(to_images(samples, side), report_dir / f"{tfl.path.stem}_samples.png",
                                f"{tfl.path.name}: 100 samples")
        sample_paths[tfl.path.name] = path
        return {"mean_abs_diff_vs_keras": float(np.mean(np.abs(samples - keras_samples))),
                "discriminator_on_generated": float(np.mean(gan.discriminator(samples, training=False))),
                "sample_grid": path.name}

    request = ExportRequest(
        name="gan", task="generate", model=gan.generator, inputs={"noise": (1, LATENT_DIM)}, outputs=["image"],
        representative=lambda: ({"noise": z[None]} for z in calib),
        preprocess={"latent_dim": LATENT_DIM, "distribution": "normal(0, 1)"},
        postprocess={"height": side, "width": side, "pixel_offset": PIXEL_OFFSET, "pixel_scale": PIXEL_SCALE,
                     "labels": data.labels, "note": "pixel = output * pixel_scale + pixel_offset"},
        dataset=data.name, training={"profile": profile, **dataclasses.asdict(cfg), "steps_per_epoch": steps},
        parity_tolerance={"image": 0.02},
    )
    entries = export_both(request, out_dir, lambda: ({"noise": z[None]} for z in noise), evaluate, keras_metrics)
    pictures = [plots.training_curves(history.history, "GAN losses", report_dir / "gan_training.png"),
                *grids.paths, *sample_paths.values()]
    figures = {"sample_grid": str(sample_paths[entries[0].file]), "keras": keras_metrics,
               "int8": entries[0].metrics, "epochs": cfg.epochs, "steps_per_epoch": steps}
    return TaskResult("gan", entries, figures, pictures)
