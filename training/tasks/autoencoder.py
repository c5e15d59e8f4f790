"""Autoencoder: train on normal readings only, calibrate the alert threshold on held-out normal data.

The model only produces a score (reconstruction MSE per reading); the rule that turns
scores into alerts (threshold, debouncing) lives on the edge and can be recalibrated
without retraining. The threshold shipped in the manifest is the given percentile of
the *int8 file's* errors on held-out normal data, since that is the model that runs.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import keras
import numpy as np

from edge.runtime import TFLiteModel
from training import plots
from training.datasets.sensors import SensorData, load_sensors
from training.evaluation import anomaly_metrics, reconstruction_errors
from training.export import ExportRequest, export_both
from training.models.autoencoder import build_autoencoder
from training.profiles import AutoencoderConfig
from training.tasks import TaskResult, set_seed
from training.tflite import run_batch

log = logging.getLogger(__name__)



def scaling(data: SensorData) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) so that (value - offset) / scale lies in [-1, 1] (the tanh output's range).

    The lecture's data is fed unscaled (its values already lie in about [-1.1, 1]), which keeps
    its numbers comparable; any other CSV is mapped from its training range with a 10% margin.
    """
    features = data.train.shape[1]
    if data.name == "lecture":
        return np.zeros(features, np.float32), np.ones(features, np.float32)
    low, high = data.train.min(axis=0), data.train.max(axis=0)
    offset = (high + low) / 2
    scale = np.maximum((high - low) / 2 * 1.1, 1e-6)
    return offset.astype(np.float32), scale.astype(np.float32)


def windows(rows: np.ndarray, size: int) -> np.ndarray:
    """Every run of `size` consecutive rows, flattened oldest first: the edge's AnomalyScorer order."""
    if size == 1:
        return rows
    return np.stack([rows[i:i + size].reshape(-1) for i in range(len(rows) - size + 1)])


def run(cfg: AutoencoderConfig, out_dir: Path, report_dir: Path, profile: str) -> TaskResult:
    set_seed(cfg.seed)
    data = load_sensors(cfg.dataset, cfg.normal_rows)
    offset, scale = scaling(data)
    sets = {"clean": data.train, "test": data.validation, **data.anomalous}
    scaled = {k: windows((v - offset) / scale, cfg.window) for k, v in sets.items() if len(v) >= cfg.window}
    width = scaled["clean"].shape[1]
    code = cfg.code_units if cfg.code_units != 0 else max(1, width // 4)
    model = build_autoencoder(width, code, tuple(cfg.hidden))
    steps = cfg.epochs * int(np.ceil(len(scaled["clean"]) / cfg.batch_size))
    rate = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps) if cfg.cosine_decay else cfg.learning_rate
    optimizer = keras.optimizers.SGD(rate) if cfg.optimizer == "sgd" else keras.optimizers.Adam(rate)
    model.compile(loss="mean_squared_error", optimizer=optimizer)
    history = model.fit(scaled["clean"], scaled["clean"], batch_size=cfg.batch_size, epochs=cfg.epochs,
                        validation_data=(scaled["test"], scaled["test"]), verbose=2)
    keras_errors = {k: reconstruction_errors(lambda x: model.predict(x, verbose=0), v) for k, v in scaled.items()}
    keras_metrics = {f"{k}_mse": float(v.mean()) for k, v in keras_errors.items()}
    rng = np.random.default_rng(cfg.seed)
    calib = scaled["clean"][rng.choice(len(scaled["clean"]), min(1000, len(scaled["clean"])), replace=False)]
    errors_by_file: dict[str, dict[str, np.ndarray]] = {}

    def evaluate(tfl: TFLiteModel) -> dict:
        errors = {k: reconstruction_errors(lambda x: run_batch(tfl, "reading", x)["reconstruction"], v)
                  for k, v in scaled.items()}
        errors_by_file[tfl.path.name] = errors
        return anomaly_metrics(errors, cfg.threshold_percentile, [k for k in data.anomalous if k in scaled])

    request = ExportRequest(
        name="autoencoder", task="anomaly", model=model, inputs={"reading": (1, width)},
        outputs=["reconstruction"], representative=lambda: ({"reading": r[None]} for r in calib),
        preprocess={"features": data.features, "offset": offset.tolist(), "scale": scale.tolist(),
                    "window": cfg.window,
                    "note": "model input = (value - offset) / scale per feature, for the last `window` readings "
                            "flattened oldest first"},
        postprocess={"threshold": None, "threshold_method": f"p{cfg.threshold_percentile:g} of held-out normal "
                     f"reconstruction error ({len(scaled['test'])} samples), measured on this file",
                     "score": "mean squared reconstruction error over the scaled features"},
        dataset=data.name, training={"profile": profile, **dataclasses.asdict(cfg)},
        quantization=cfg.quantization, parity_tolerance={"reconstruction": 0.01},
    )
    entries = export_both(request, out_dir, lambda: ({"reading": r[None]} for r in scaled["test"][:300]),
                          evaluate, keras_metrics)
    for entry in entries:  # each file ships the threshold calibrated on its own errors
        entry.postprocess = {**entry.postprocess, "threshold": entry.metrics["threshold"]}
    int8 = entries[0]
    pictures = [
        plots.training_curves(history.history, "autoencoder (MSE)", report_dir / "autoencoder_training.png"),
        plots.error_histogram(errors_by_file[int8.file], int8.metrics["threshold"],
                              "int8 autoencoder: reconstruction error", report_dir / "autoencoder_errors.png"),
    ]
    figures = {"keras": keras_metrics, "int8": int8.metrics, "float32": entries[1].metrics}
    return TaskResult("autoencoder", entries, figures, pictures)
