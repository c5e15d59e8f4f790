"""CNN: train the image classifier, export it, measure accuracy on the `.tflite` files."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import keras
import numpy as np

from edge.runtime import TFLiteModel
from training import plots
from training.datasets.images import ImageDataset, load_image_dataset
from training.evaluation import accuracy, images_to_input
from training.export import ExportError, ExportRequest, export_both
from training.models.cnn import ARCHITECTURES
from training.profiles import CNNConfig
from training.tasks import TaskResult, set_seed
from training.tflite import run_batch

log = logging.getLogger(__name__)


def preprocess_spec(data: ImageDataset) -> dict:
    height, width = data.x_train.shape[1:3]
    return {"height": int(height), "width": int(width), "channels": 1, "color": "grayscale",
            "invert": False, "pixel_offset": 0.0, "pixel_scale": 255.0,
            "note": "model input = (gray pixel - pixel_offset) / pixel_scale; dataset images are light on dark"}


def train(cfg: CNNConfig, data: ImageDataset, pre: dict) -> tuple[keras.Model, dict]:
    set_seed(cfg.seed)
    model = ARCHITECTURES[cfg.arch](data.x_train.shape[1:3] + (1,), data.num_classes)
    steps = cfg.epochs * int(np.ceil(len(data.x_train) * (1 - cfg.validation_fraction) / cfg.batch_size))
    rate = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps) if cfg.cosine_decay else cfg.learning_rate
    model.compile(optimizer=keras.optimizers.Adam(rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(images_to_input(data.x_train, pre), data.y_train, batch_size=cfg.batch_size, epochs=cfg.epochs,
                        validation_split=cfg.validation_fraction, verbose=2)
    return model, history.history


def run(cfg: CNNConfig, out_dir: Path, report_dir: Path, profile: str) -> TaskResult:
    data = load_image_dataset(cfg.dataset).subset(cfg.train_limit, cfg.test_limit)
    log.info("CNN on %s: %d train / %d test images, %d classes", data.name, len(data.x_train),
             len(data.x_test), data.num_classes)
    pre = preprocess_spec(data)
    to_input = lambda images: images_to_input(images, pre)  # noqa: E731
    model, history = train(cfg, data, pre)
    x_test = to_input(data.x_test)
    keras_acc = accuracy(model.predict(x_test, verbose=0), data.y_test)
    rng = np.random.default_rng(cfg.seed)
    calib = data.x_train[rng.choice(len(data.x_train), size=min(500, len(data.x_train)), replace=False)]
    held_out = data.x_test[: min(300, len(data.x_test))]

    predictions: dict[str, np.ndarray] = {}

    def evaluate(tfl: TFLiteModel) -> dict:
        probs = run_batch(tfl, "image", x_test)["probabilities"]
        predictions[tfl.path.name] = np.argmax(probs, axis=1)
        return {"accuracy": accuracy(probs, data.y_test), "test_samples": int(len(data.y_test)),
                "dataset": data.name}

    request = ExportRequest(
        name="cnn", task="classify", model=model, inputs={"image": (1, *x_test.shape[1:])},
        outputs=["probabilities"],
        representative=lambda: ({"image": to_input(img[None])} for img in calib),
        preprocess=pre, postprocess={"labels": data.labels, "top_k": 3},
        dataset=data.name, training={"profile": profile, **dataclasses.asdict(cfg)},
        parity_tolerance={"probabilities": 0.02},
    )
    entries = export_both(request, out_dir, lambda: ({"image": to_input(i[None])} for i in held_out),
                          evaluate, {"accuracy": keras_acc})
    drop = (keras_acc - entries[0].metrics["accuracy"]) * 100
    if drop > cfg.max_accuracy_drop:
        raise ExportError(f"int8 CNN accuracy {entries[0].metrics['accuracy']:.4f} is {drop:.2f} points below "
                          f"Keras {keras_acc:.4f} (allowed {cfg.max_accuracy_drop})")
    pred = predictions[entries[0].file]
    pictures = [
        plots.training_curves(history, f"CNN on {data.name}", report_dir / "cnn_training.png"),
        plots.confusion_matrix(data.y_test, pred, data.labels, f"int8 CNN on {data.name} test set",
                               report_dir / "cnn_confusion.png"),
    ]
    figures = {"keras_accuracy": keras_acc, "int8_accuracy": entries[0].metrics["accuracy"],
               "float32_accuracy": entries[1].metrics["accuracy"], "int8_bytes": entries[0].size_bytes,
               "float32_bytes": entries[1].size_bytes, "dataset": data.name}
    return TaskResult("cnn", entries, figures, pictures)
