"""CNN: train the image classifier, export it, measure accuracy on the `.tflite` files.

Large sets (Fashion-MNIST's 60,000 images) train as the committed model did: 12 epochs of batch 128.
Small folders (hundreds to a few thousand images) get a recipe that holds there (`recipe`): the
number of epochs from the data size, augmentation, early stopping on the validation split,
batch norm that settles. And whatever the set, a model whose held-out accuracy is near chance
or far below what Keras reported is refused (`refusal`), before and after conversion, with no
file left behind (training.export stages the files).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel
from training import plots
from training.datasets.images import ImageDataset, load_image_dataset
from training.export import ExportError, ExportRequest, export_both
from training.models.cnn import ARCHITECTURES, recompute_batch_norm
from training.quality.evaluation import accuracy, images_to_input
from training.tasks.base import Option, Task, TaskResult, set_seed
from training.tflite import run_batch

log = logging.getLogger(__name__)


@dataclass
class CNNConfig:
    dataset: str = "fashion_mnist"
    arch: str = "compact"  # "lecture": the lecture's network (the lecture profile)
    # None: from the data size -- at least 12 epochs and at least `min_steps` optimizer steps (12 epochs of
    # 422 steps for Fashion-MNIST's 54,000 images; ~75 epochs of 41 steps for 1,300 digits)
    epochs: int | None = None
    batch_size: int | None = None  # None: 128, or 32 for a small set (below `small_set` training images)
    min_steps: int = 3000
    max_epochs: int = 150
    # Below this many training images the small-set recipe applies: light augmentation (shifts, small
    # rotations and zooms), batch-norm momentum 0.9, early stopping on the validation split
    # (restoring the best weights) and a final pass that recomputes the batch-norm statistics
    small_set: int = 20000
    flip: bool = False  # small sets: mirrored images too (`--flip`; camera crops of doors, feeders, printers)
    patience: int = 15  # epochs without a better validation loss before stopping (small sets)
    learning_rate: float = 1e-3
    cosine_decay: bool = True  # the learning rate decays to 0 over the run
    validation_fraction: float = 0.1
    train_limit: int | None = None  # first N training images (quick runs)
    test_limit: int | None = None
    max_accuracy_drop: float = 0.5  # int8 vs Keras, in points (at least 2 held-out images); export fails beyond it
    # Export is refused when the quantized file's held-out accuracy is near chance -- below chance (the
    # largest class's share) + this fraction of the way to 100%, or within 3 binomial standard errors
    # of chance -- or this many points below the best Keras validation accuracy (plus sampling noise)
    min_gain_over_chance: float = 0.25
    max_validation_gap: float = 0.15
    seed: int = 1


def preprocess_spec(data: ImageDataset) -> dict:
    height, width = data.x_train.shape[1:3]
    return {"height": int(height), "width": int(width), "channels": 1, "color": "grayscale",
            "invert": False, "pixel_offset": 0.0, "pixel_scale": 255.0,
            "note": "model input = (gray pixel - pixel_offset) / pixel_scale; dataset images are light on dark"}


@dataclass(frozen=True)
class Recipe:
    """How long and how: derived from the number of images the network fits on."""

    small: bool
    batch_size: int
    steps_per_epoch: int
    epochs: int


def recipe(cfg: CNNConfig, fit_images: int) -> Recipe:
    small = fit_images < cfg.small_set
    batch = cfg.batch_size or (32 if small else 128)
    steps = math.ceil(fit_images / batch)
    epochs = cfg.epochs or min(cfg.max_epochs, max(12, math.ceil(cfg.min_steps / steps)))
    return Recipe(small, batch, steps, epochs)


def augmenter(seed: int, flip: bool = False) -> keras.Sequential:
    """Light augmentation for small sets: a few pixels of shift, a few degrees, a little zoom. Flips only
    when asked (`--flip`): a mirrored digit or letter is another class, a mirrored door or bird is not."""
    steps = [layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
             layers.RandomRotation(0.04, fill_mode="nearest", seed=seed + 1),
             layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2)]
    return keras.Sequential(steps + ([layers.RandomFlip("horizontal", seed=seed + 3)] if flip else []),
                            name="augment")


def train(cfg: CNNConfig, data: ImageDataset, pre: dict) -> tuple[keras.Model, dict, Recipe]:
    set_seed(cfg.seed)
    x, y = images_to_input(data.x_train, pre), data.y_train
    split = int(len(x) * (1 - cfg.validation_fraction))
    plan = recipe(cfg, split)
    log.info("CNN recipe: %s", plan)
    extra = {"bn_momentum": 0.9} if plan.small and cfg.arch == "compact" else {}
    model = ARCHITECTURES[cfg.arch](data.x_train.shape[1:3] + (1,), data.num_classes, **extra)
    total = plan.epochs * plan.steps_per_epoch
    rate = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, total) if cfg.cosine_decay else cfg.learning_rate
    model.compile(optimizer=keras.optimizers.Adam(rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if not plan.small:  # large sets: the recipe the committed Fashion-MNIST model was trained with
        history = model.fit(x, y, batch_size=plan.batch_size, epochs=plan.epochs,
                            validation_split=cfg.validation_fraction, verbose=2)
        return model, history.history, plan
    augment = augmenter(cfg.seed, cfg.flip)
    batches = (tf.data.Dataset.from_tensor_slices((x[:split], y[:split])).shuffle(split, seed=cfg.seed)
               .batch(plan.batch_size).map(lambda a, b: (augment(a, training=True), b))
               .prefetch(tf.data.AUTOTUNE))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    history = model.fit(batches, epochs=plan.epochs, validation_data=(x[split:], y[split:]), callbacks=[stop],
                        verbose=2)
    if recompute_batch_norm(model, x[:split]):
        log.info("batch-norm statistics recomputed on the %d training images", split)
    return model, history.history, plan


def refusal(accuracy_: float, n_test: int, chance: float, validation: float, n_validation: int,
            cfg: CNNConfig, what: str) -> str | None:
    """Why a classifier must not be exported (None: it may be): held-out accuracy near chance, or far
    below the validation accuracy Keras reported. Both limits widen with the sampling noise of the
    held-out and validation sets, so a tiny folder cannot pass by luck nor fail by it."""
    floor = chance + max(cfg.min_gain_over_chance * (1 - chance), 3 * math.sqrt(chance * (1 - chance) / n_test))
    if accuracy_ < floor:
        return (f"{what} held-out accuracy {accuracy_:.1%} on {n_test} images is near chance ({chance:.1%}, the "
                f"largest class's share); at least {floor:.1%} is needed to export. The model is not usable: "
                "check the labels (one sub-folder per class), add images per class, or train longer (--epochs)")
    noise = 3 * math.sqrt(validation * (1 - validation) / max(n_validation, 1)
                          + accuracy_ * (1 - accuracy_) / n_test)
    allowed = max(cfg.max_validation_gap, noise)
    if validation - accuracy_ > allowed:
        return (f"{what} held-out accuracy {accuracy_:.1%} is {validation - accuracy_:.1%} below the best Keras "
                f"validation accuracy {validation:.1%} (allowed {allowed:.1%}): the exported model does not "
                "behave like the one trained (batch-norm statistics, preprocessing or quantization); not exported")
    return None


@dataclass(frozen=True)
class Yardstick:
    """What every exported file is held to, measured on the Keras model: its held-out accuracy, chance
    (the largest class's share of the held-out images) and the best validation accuracy, with the
    sizes of the sets behind them (the refusal's limits widen with their sampling noise)."""

    keras: float
    chance: float
    validation: float
    n_test: int
    n_validation: int

    def refusal(self, accuracy_: float, cfg: CNNConfig, what: str) -> str | None:
        return refusal(accuracy_, self.n_test, self.chance, self.validation, self.n_validation, cfg, what)


def measure_keras(cfg: CNNConfig, data: ImageDataset, model: keras.Model, history: dict,
                  x_test: np.ndarray) -> Yardstick:
    """The Keras model's figures; a model already near chance here is refused before any conversion."""
    keras_acc = accuracy(model.predict(x_test, verbose=0), data.y_test)
    chance = float(np.bincount(data.y_test, minlength=data.num_classes).max() / len(data.y_test))
    validation = float(max(history.get("val_accuracy", [keras_acc])))
    n_validation = len(data.x_train) - int(len(data.x_train) * (1 - cfg.validation_fraction))
    log.info("Keras: held-out accuracy %.4f (chance %.4f), best validation accuracy %.4f", keras_acc, chance,
             validation)
    yardstick = Yardstick(keras_acc, chance, validation, len(data.y_test), n_validation)
    reason = yardstick.refusal(keras_acc, cfg, "Keras")
    if reason:
        raise ExportError(f"CNN on {data.name}: {reason}")
    return yardstick


def export_request(cfg: CNNConfig, data: ImageDataset, model: keras.Model, pre: dict, x_test: np.ndarray,
                   profile: str) -> ExportRequest:
    """The CNN's manifest entry, and int8 calibration on 500 training images drawn with the config's seed."""
    rng = np.random.default_rng(cfg.seed)
    calib = data.x_train[rng.choice(len(data.x_train), size=min(500, len(data.x_train)), replace=False)]
    return ExportRequest(
        name="cnn", task="classify", model=model, inputs={"image": (1, *x_test.shape[1:])},
        outputs=["probabilities"],
        representative=lambda: ({"image": images_to_input(img[None], pre)} for img in calib),
        preprocess=pre, postprocess={"labels": data.labels, "top_k": 3},
        dataset=data.name, training={"profile": profile, **dataclasses.asdict(cfg)},
        parity_tolerance={"probabilities": 0.02},
    )


def acceptance(cfg: CNNConfig, data: ImageDataset, yardstick: Yardstick) -> Callable[[list[ModelEntry]], None]:
    """The check on the quantized file before anything is written: no more than `max_accuracy_drop`
    points below Keras (or 2 images of a small set), and not refused as the Keras model could be."""

    def accept(entries: list[ModelEntry]) -> None:
        quantized = entries[0].metrics["accuracy"]
        drop = (yardstick.keras - quantized) * 100
        allowed = max(cfg.max_accuracy_drop, 200 / len(data.y_test))  # 0.5 points, or 2 images of a small set
        if drop > allowed:
            raise ExportError(f"int8 CNN accuracy {quantized:.4f} is {drop:.2f} points below Keras "
                              f"{yardstick.keras:.4f} (allowed {allowed:.2f}); nothing written")
        reason = yardstick.refusal(quantized, cfg, entries[0].file)
        if reason:
            raise ExportError(f"CNN on {data.name}: {reason}")

    return accept


def run(cfg: CNNConfig, out_dir: Path, report_dir: Path, profile: str) -> TaskResult:
    data = load_image_dataset(cfg.dataset).subset(cfg.train_limit, cfg.test_limit)
    log.info("CNN on %s: %d train / %d test images, %d classes", data.name, len(data.x_train),
             len(data.x_test), data.num_classes)
    pre = preprocess_spec(data)
    model, history, plan = train(cfg, data, pre)
    x_test = images_to_input(data.x_test, pre)
    yardstick = measure_keras(cfg, data, model, history, x_test)
    predictions: dict[str, np.ndarray] = {}

    def evaluate(tfl: TFLiteModel) -> dict:
        probs = run_batch(tfl, "image", x_test)["probabilities"]
        predictions[tfl.path.name] = np.argmax(probs, axis=1)
        return {"accuracy": accuracy(probs, data.y_test), "test_samples": int(len(data.y_test)),
                "dataset": data.name, "chance": yardstick.chance,
                "recipe": {**dataclasses.asdict(plan), "epochs_run": len(history["loss"]),
                           "flip": cfg.flip and plan.small}}

    held_out = data.x_test[: min(300, len(data.x_test))]
    entries = export_both(export_request(cfg, data, model, pre, x_test, profile), out_dir,
                          lambda: ({"image": images_to_input(i[None], pre)} for i in held_out), evaluate,
                          {"accuracy": yardstick.keras, "best_validation_accuracy": yardstick.validation,
                           "chance": yardstick.chance}, accept=acceptance(cfg, data, yardstick))
    pictures = [
        plots.training_curves(history, f"CNN on {data.name}", report_dir / "cnn_training.png"),
        plots.confusion_matrix(data.y_test, predictions[entries[0].file], data.labels,
                               f"int8 CNN on {data.name} test set", report_dir / "cnn_confusion.png"),
    ]
    return TaskResult(entries, pictures)


# The CNN's training is not given in the lecture; one epoch of Adam at batch 128 is the figure
# docs/DESIGN.md cites (~84% on Fashion-MNIST).
TASK = Task(
    "cnn", CNNConfig,
    profiles={"lecture": CNNConfig(arch="lecture", epochs=1, batch_size=128, cosine_decay=False),
              "default": CNNConfig(),
              "quick": CNNConfig(arch="lecture", epochs=1, cosine_decay=False, train_limit=6000, test_limit=1000,
                                 max_accuracy_drop=1.5)},
    run=run, datasets="fashion_mnist[:DIR], mnist[:DIR], digits, folder:DIR",
    options=(Option("--flip", "cnn on a small folder: augment with mirrored images (right for camera crops of a "
                    "scene; wrong for digits or letters)", switch=True),),
    order=10,
)
