"""Task metrics measured on exported `.tflite` files (numpy + the edge runtime, no TensorFlow).

Training uses these to write the manifest's metrics; the tests use the same functions to
re-measure the committed files, so "the int8 accuracy" always means one computation.
Scaling comes from the manifest entry, as on the edge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge.models.classifier import pixels_to_input
from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel
from edge.models.series_forecast import Base, is_residual, replay, stream_from_manifest
from edge.models.series_transform import SeriesTransform
from training.quality.holdout import cross_fitted_share
from training.tflite import run_batch


def images_to_input(images: np.ndarray, pre: dict[str, Any]) -> np.ndarray:
    """Gray levels (N, H, W) -> float32 (N, H, W, 1) with the edge's own scaling function. uint8 images
    go through float32, as the edge's lookup table for uint8 frames at the model's size does; float
    gray levels (a folder resized by `edge_gray`) as they are, as the edge's resize path does."""
    gray = images.astype(np.float32) if images.dtype == np.uint8 else images
    return pixels_to_input(gray, pre)[..., None]


def classify(model: TFLiteModel, entry: ModelEntry, images: np.ndarray) -> np.ndarray:
    """Class probabilities for uint8 images, one invoke each."""
    return run_batch(model, entry.inputs[0].name, images_to_input(images, entry.preprocess))[entry.outputs[0].name]


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def reconstruction_errors(reconstruct: Callable[[np.ndarray], np.ndarray], scaled: np.ndarray) -> np.ndarray:
    """MSE per reading between the scaled input and its reconstruction."""
    return np.mean((reconstruct(scaled) - scaled) ** 2, axis=1)


def anomaly_metrics(errors: dict[str, np.ndarray], percentile: float, anomalous: list[str]) -> dict[str, float]:
    """Mean errors per set, the threshold from the held-out normal set ("test") and rates at it; the
    held-out false-alert rate printed is `false_alert_rate_heldout`, cross-fitted (`training.quality.holdout`):
    the threshold's own slice (`false_alert_rate_test`) gives 1 - percentile by construction."""
    threshold = float(np.percentile(errors["test"], percentile))
    metrics = {f"{k}_mse": float(v.mean()) for k, v in errors.items()}
    metrics["threshold"] = threshold
    metrics["false_alert_rate_test"] = float(np.mean(errors["test"] > threshold))  # 1 - percentile, by construction
    metrics["false_alert_rate_heldout"] = cross_fitted_share(errors["test"], percentile)  # out of sample
    metrics["false_alert_rate_clean"] = float(np.mean(errors["clean"] > threshold))
    for k in anomalous:
        metrics[f"detection_rate_{k}"] = float(np.mean(errors[k] > threshold))
    return metrics


LECTURE_LOOK_BACK = 5  # the lecture's window: it defines which months count as train and test targets


def lecture_targets(n: int, train_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Months forecast in the lecture's protocol: its off-by-one windows drop each split's last month."""
    return (np.arange(LECTURE_LOOK_BACK, train_size - 1),
            np.arange(train_size + LECTURE_LOOK_BACK, n - 1))


def forecast_targets(n: int, train_size: int, look_back: int, order: int, lecture_windows: bool) -> np.ndarray:
    """The months a forecaster is asked for, in order. The lecture's model sees only the lecture's
    windows (state carried from the train windows into the test windows); a transformed model steps
    through every month, as on the edge, from the first month with enough history."""
    if lecture_windows:
        return np.concatenate(lecture_targets(n, train_size))
    return np.arange(order + look_back, n)


def series_windows(transform: SeriesTransform, values: np.ndarray, look_back: int,
                   targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model input window for each target (the look_back features before it) and the levels."""
    levels = np.array([transform.level(v) for v in values])
    features = transform.features(levels)  # features[j] belongs to month j + order
    ends = targets - 1 - transform.order
    windows = np.stack([features[e - look_back + 1:e + 1] for e in ends]).reshape(-1, look_back, 1)
    return windows.astype(np.float32), levels


def step_through(step: Callable[[dict], dict], windows: np.ndarray, units: int) -> tuple[np.ndarray, list[dict]]:
    """Run a step function (x, h, c) -> (y, h_out, c_out) over windows from a zero state."""
    h = np.zeros((1, units), np.float32)
    c = np.zeros((1, units), np.float32)
    outputs, feeds = [], []
    for window in windows:
        feed = {"x": window[None], "h": h, "c": c}
        out = step(feed)
        feeds.append(feed)
        outputs.append(float(np.asarray(out["y"]).ravel()[0]))
        h, c = np.asarray(out["h_out"], np.float32), np.asarray(out["c_out"], np.float32)
    return np.asarray(outputs, np.float32), feeds


def to_values(transform: SeriesTransform, outputs: np.ndarray, levels: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Model outputs (scaled features of the target months) -> forecast values."""
    return np.array([transform.invert(y, levels[:t]) for y, t in zip(outputs, targets)])


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def forecast_metrics(values: np.ndarray, targets: np.ndarray, forecasts: np.ndarray, train_size: int) -> dict:
    """RMSE on the lecture's train and test months (those forecast), MAPE on the last 36 months."""
    by_month = dict(zip(targets.tolist(), forecasts.tolist()))
    train, test = lecture_targets(len(values), train_size)
    train = np.array([t for t in train if t in by_month])
    metrics = {"train_rmse": rmse([by_month[t] for t in train], values[train]),
               "test_rmse": rmse([by_month[t] for t in test], values[test]),
               "train_months": f"{int(train[0])}-{int(train[-1])}", "test_months": f"{int(test[0])}-{int(test[-1])}"}
    last36 = np.arange(len(values) - 36, len(values))
    if all(t in by_month for t in last36) and np.all(values[last36] != 0):  # MAPE is undefined over a zero
        metrics["mape_last36"] = float(np.mean(np.abs(np.array([by_month[t] for t in last36]) - values[last36])
                                               / values[last36]) * 100)
    return metrics


def generated_images(samples: np.ndarray, post: dict[str, Any]) -> np.ndarray:
    """Generator output -> uint8 images, with the manifest's pixel scaling."""
    pixels = np.asarray(samples) * post["pixel_scale"] + post["pixel_offset"]
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8).reshape(-1, post["height"], post["width"])


def forecaster_run(run: Callable[[dict], dict], entry: ModelEntry, values: np.ndarray,
                   targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts of a step model (`run` = TFLiteModel.run or a Keras call) for `targets` (default: the
    manifest's protocol), from a zero state; returns (targets, forecast values). A residual entry (with a
    base) is stepped by the edge's own stream, `edge.models.series_forecast`."""
    pre, cfg = entry.preprocess, entry.training
    if is_residual(entry.postprocess):
        made = replay(stream_from_manifest(pre, entry.postprocess, run), values)
        targets = np.arange(Base.from_manifest(entry.postprocess["base"]).span, len(values)) if targets is None \
            else targets
        return targets, np.array([made[t - 1].value for t in targets])  # type: ignore[union-attr]
    transform = SeriesTransform.from_manifest(pre)
    n = len(values)
    if targets is None:  # manifests before `protocol` existed: no transform meant the lecture's protocol
        lecture = cfg.get("protocol", "step" if transform.log or transform.differences else "lecture") == "lecture"
        targets = forecast_targets(n, int(n * cfg["train_fraction"]), pre["look_back"], transform.order, lecture)
    windows, levels = series_windows(transform, np.asarray(values, np.float64), pre["look_back"], targets)
    out, _ = step_through(run, windows, entry.postprocess["state"]["shape"][1])
    return targets, to_values(transform, out, levels, targets)
