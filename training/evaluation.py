"""Task metrics measured on exported `.tflite` files (numpy + the edge runtime, no TensorFlow).

Training uses these to write the manifest's metrics; the tests use the same functions to
re-measure the committed files, so "the int8 accuracy" always means one computation.
Scaling comes from the manifest entry, as on the edge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge.manifest import ModelEntry
from edge.runtime import TFLiteModel


def images_to_input(images: np.ndarray, pre: dict[str, Any]) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, H, W, 1) as the manifest's preprocess says."""
    x = images.astype(np.float32)
    if pre.get("invert"):
        x = 255.0 - x
    return ((x - pre["pixel_offset"]) / pre["pixel_scale"])[..., None]


def classify(model: TFLiteModel, entry: ModelEntry, images: np.ndarray) -> np.ndarray:
    """Class probabilities for uint8 images, one invoke each."""
    return model.run_batch(entry.inputs[0].name, images_to_input(images, entry.preprocess))[entry.outputs[0].name]


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def reconstruction_errors(reconstruct: Callable[[np.ndarray], np.ndarray], scaled: np.ndarray) -> np.ndarray:
    """MSE per reading between the scaled input and its reconstruction."""
    return np.mean((reconstruct(scaled) - scaled) ** 2, axis=1)


def anomaly_metrics(errors: dict[str, np.ndarray], percentile: float, anomalous: list[str]) -> dict[str, float]:
    """Mean errors per set, the threshold from the held-out normal set ("test") and rates at it."""
    threshold = float(np.percentile(errors["test"], percentile))
    metrics = {f"{k}_mse": float(v.mean()) for k, v in errors.items()}
    metrics["threshold"] = threshold
    metrics["false_alert_rate_test"] = float(np.mean(errors["test"] > threshold))
    metrics["false_alert_rate_clean"] = float(np.mean(errors["clean"] > threshold))
    for k in anomalous:
        metrics[f"detection_rate_{k}"] = float(np.mean(errors[k] > threshold))
    return metrics


def create_windows(series: np.ndarray, look_back: int) -> tuple[np.ndarray, np.ndarray]:
    """The lecture's create_dataset, off-by-one included: (len - look_back - 1) windows."""
    n = len(series) - look_back - 1
    xs = [series[i:i + look_back] for i in range(n)]
    ys = [series[i + look_back] for i in range(n)]
    return np.asarray(xs, np.float32).reshape(-1, look_back, 1), np.asarray(ys, np.float32)


def step_through(step: Callable[[dict], dict], windows: np.ndarray, units: int) -> tuple[np.ndarray, list[dict]]:
    """Run a step function (x, h, c) -> (y, h_out, c_out) over windows from a zero state."""
    h = np.zeros((1, units), np.float32)
    c = np.zeros((1, units), np.float32)
    forecasts, feeds = [], []
    for window in windows:
        feed = {"x": window[None], "h": h, "c": c}
        out = step(feed)
        feeds.append(feed)
        forecasts.append(float(np.asarray(out["y"]).ravel()[0]))
        h, c = np.asarray(out["h_out"], np.float32), np.asarray(out["c_out"], np.float32)
    return np.asarray(forecasts, np.float32), feeds


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def lecture_split(values: np.ndarray, look_back: int, train_fraction: float, low: float, high: float) -> dict:
    """Scaled windows of the lecture's protocol: train = first int(fraction * n) points, test = the rest."""
    scaled = (np.asarray(values, np.float32) - low) / (high - low)
    train_size = int(len(scaled) * train_fraction)
    train_x, train_y = create_windows(scaled[:train_size], look_back)
    test_x, test_y = create_windows(scaled[train_size:], look_back)
    return {"train_size": train_size, "train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "windows": np.concatenate([train_x, test_x])}


def forecast_rmse(pred_scaled: np.ndarray, split: dict, low: float, high: float) -> dict[str, float]:
    """Train/test RMSE in the series' units for forecasts over split['windows']."""
    n_train = len(split["train_x"])
    unscale = lambda v: np.asarray(v) * (high - low) + low  # noqa: E731
    return {"train_rmse": rmse(unscale(pred_scaled[:n_train]), unscale(split["train_y"])),
            "test_rmse": rmse(unscale(pred_scaled[n_train:]), unscale(split["test_y"]))}


def generated_images(samples: np.ndarray, post: dict[str, Any]) -> np.ndarray:
    """Generator output -> uint8 images, with the manifest's pixel scaling."""
    pixels = np.asarray(samples) * post["pixel_scale"] + post["pixel_offset"]
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8).reshape(-1, post["height"], post["width"])
