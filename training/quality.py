"""`python -m training evaluate`: every quality target, measured on the committed `.tflite` files.

One table: the lecture's figure, reference figures, the float32 twin (which equals the Keras
model within 1e-4, see the manifest's parity), and the quantized file the edge runs. Nothing
here retrains; the Keras column of the training table is in the manifest (`keras_metrics`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg

from edge.macs import count_macs
from edge.manifest import Manifest, ModelEntry, read_manifest
from edge.runtime import TFLiteModel, load_runtime
from training.baselines import baseline_metrics, winner
from training.datasets.images import load_image_dataset
from training.datasets.sensors import lecture_sensor_data
from training.datasets.series import load_series
from training.evaluation import (
    accuracy,
    classify,
    forecast_metrics,
    forecaster_run,
    generated_images,
    lecture_targets,
    reconstruction_errors,
)
from training.paths import MODELS_DIR

FRESH_SEED = 1  # a clean stream the threshold never saw: the false-alert rate is measured on it


@dataclass
class Target:
    label: str
    key: str
    goal: str  # human-readable, e.g. ">= 92.5%"
    ok: Any  # callable(value) -> bool
    fmt: str
    lecture: str = "—"
    reference: str = "—"


TARGETS = {
    "cnn": [
        Target("CNN Fashion-MNIST test accuracy", "accuracy", ">= 92.5%", lambda v: v >= 0.925, "{:.2%}",
               "~84% (1 epoch)"),
        Target("CNN int8 file size", "size_bytes", "<= 1 MB", lambda v: v <= 1_000_000, "{:,.0f} B"),
        Target("CNN multiply-accumulates per frame", "macs", "<= 20 M", lambda v: v <= 20_000_000, "{:,.0f}",
               "14,014,976"),
    ],
    "lstm": [
        Target("LSTM test RMSE (passengers, lecture protocol)", "test_rmse", "<= 16", lambda v: v <= 16.0, "{:.2f}",
               "48.75", "persistence 50.1, seasonal naive y[t-12] 43.0, naive growth 16.5, Holt-Winters 18.1, "
               "SARIMA 14.6"),
        Target("LSTM MAPE, last 36 months (one step ahead)", "mape_last36", "report", lambda v: True, "{:.2f}%",
               "—", "libraries' 36-month-horizon forecasts: 4-5%"),
    ],
    "autoencoder": [
        Target("AE false alerts on a fresh clean stream", "false_alert_rate_fresh", "<= 1.5%",
               lambda v: v <= 0.015, "{:.2%}"),
        Target("AE 'wrong' readings flagged", "detection_rate_wrong", ">= 78%", lambda v: v >= 0.78, "{:.1%}",
               "—", "best possible ~80%"),
        Target("AE 'noisy' readings flagged", "detection_rate_noisy", ">= 64%", lambda v: v >= 0.64, "{:.1%}",
               "—", "best possible ~67%"),
        Target("AE ROC AUC clean vs wrong", "auc_wrong", ">= 0.89", lambda v: v >= 0.89, "{:.3f}"),
    ],
    "gan": [
        Target("GAN samples the CNN judges with confidence > 0.9", "confident_share", "report", lambda v: True,
               "{:.1%}"),
        Target("GAN smallest class share (judge's labels)", "min_class_share", ">= 3%", lambda v: v >= 0.03,
               "{:.1%}"),
        Target("GAN Fréchet distance to real test images (CNN features)", "frechet", "int8 within 10% of float",
               lambda v: True, "{:.2f}", "—", "real half vs real half: see below"),
    ],
}


def auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """ROC AUC by ranks (Mann-Whitney U): the chance a positive scores above a negative."""
    scores = np.concatenate([negatives, positives])
    ranks = scores.argsort().argsort() + 1.0
    u = ranks[len(negatives):].sum() - len(positives) * (len(positives) + 1) / 2
    return float(u / (len(negatives) * len(positives)))


def cnn_quality(entry: ModelEntry, model: TFLiteModel, limit: int | None = None) -> dict[str, Any]:
    data = load_image_dataset(entry.dataset)
    x, y = data.x_test[:limit], data.y_test[:limit]
    return {"accuracy": accuracy(classify(model, entry, x), y), "size_bytes": entry.size_bytes,
            "macs": count_macs(model.interpreter), "samples": len(y)}


def autoencoder_quality(entry: ModelEntry, model: TFLiteModel, limit: int | None = None) -> dict[str, Any]:
    data = lecture_sensor_data()
    fresh = lecture_sensor_data(seed=FRESH_SEED).train[:limit]
    offset, scale = np.asarray(entry.preprocess["offset"]), np.asarray(entry.preprocess["scale"])
    errors = {k: reconstruction_errors(lambda z: model.run_batch(entry.inputs[0].name, z)[entry.outputs[0].name],
                                       (v[:limit] - offset) / scale)
              for k, v in {"fresh": fresh, **data.anomalous}.items()}
    threshold = float(entry.postprocess["threshold"])
    return {"threshold": threshold, "false_alert_rate_fresh": float(np.mean(errors["fresh"] > threshold)),
            "detection_rate_wrong": float(np.mean(errors["wrong"] > threshold)),
            "detection_rate_noisy": float(np.mean(errors["noisy"] > threshold)),
            "auc_wrong": auc(errors["fresh"], errors["wrong"]), "auc_noisy": auc(errors["fresh"], errors["noisy"])}


def lstm_quality(entry: ModelEntry, model: TFLiteModel) -> dict[str, Any]:
    values = load_series(entry.training["dataset"]).values.astype(np.float64)
    train_size = int(len(values) * entry.training["train_fraction"])
    targets, forecasts = forecaster_run(model.run, entry, values)
    metrics = forecast_metrics(values, targets, forecasts, train_size)
    _, test = lecture_targets(len(values), train_size)
    base = baseline_metrics(values, train_size, 12, test)
    metrics.update({f"{k}_rmse": v for k, v in base["baselines_rmse"].items()})
    metrics["winner"] = winner(base["baselines_rmse"], metrics["test_rmse"])
    return metrics


def penultimate_features(path: Path, images: np.ndarray, pre: dict) -> np.ndarray:
    """The float CNN's input to its last dense layer, read with all tensors preserved."""
    from training.evaluation import images_to_input

    interpreter = load_runtime().interpreter_cls(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    dense = [op for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"][-1]
    feature_index = dense["inputs"][0]
    input_index = interpreter.get_input_details()[0]["index"]
    x = images_to_input(images, pre)
    out = []
    for sample in x:
        interpreter.set_tensor(input_index, sample[None])
        interpreter.invoke()
        out.append(interpreter.get_tensor(feature_index).reshape(-1).copy())
    return np.asarray(out, np.float64)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def gan_quality(manifest: Manifest, models_dir: Path, generator: str, n: int = 5000) -> dict[str, Any]:
    """The CNN as judge (confidence, class spread) and a Fréchet distance in its feature space."""
    gen_entry, judge_entry = manifest.get(generator), manifest.get("cnn")
    gen = TFLiteModel.from_entry(gen_entry, models_dir)
    judge = TFLiteModel.from_entry(judge_entry, models_dir)
    noise = np.random.default_rng(0).normal(size=(n, gen_entry.preprocess["latent_dim"])).astype(np.float32)
    fakes = generated_images(gen.run_batch(gen_entry.inputs[0].name, noise)[gen_entry.outputs[0].name],
                             gen_entry.postprocess)
    probs = classify(judge, judge_entry, fakes)
    shares = np.bincount(np.argmax(probs, axis=1), minlength=len(judge_entry.postprocess["labels"])) / n
    real = load_image_dataset(judge_entry.dataset).x_test
    features_path = models_dir / manifest.get("cnn_float32").file
    real_a = penultimate_features(features_path, real[:n], judge_entry.preprocess)
    real_b = penultimate_features(features_path, real[n:2 * n], judge_entry.preprocess)
    fake = penultimate_features(features_path, fakes, judge_entry.preprocess)
    return {"confident_share": float(np.mean(probs.max(axis=1) > 0.9)), "class_shares": shares.round(4).tolist(),
            "min_class_share": float(shares.min()), "frechet": frechet(fake, real_a),
            "frechet_real_halves": frechet(real_a, real_b), "samples": n}


def evaluate_all(models_dir: Path = MODELS_DIR, gan_samples: int = 5000) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {variant: metrics}} for the quantized file and its float32 twin."""
    manifest = read_manifest(models_dir / "manifest.json")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name, measure in (("cnn", cnn_quality), ("autoencoder", autoencoder_quality), ("lstm", lstm_quality)):
        results[name] = {}
        for variant in (name, f"{name}_float32"):
            entry = manifest.get(variant)
            results[name][variant] = measure(entry, TFLiteModel.from_entry(entry, models_dir))
    results["gan"] = {v: gan_quality(manifest, models_dir, v, gan_samples) for v in ("gan", "gan_float32")}
    return results


def _fmt(fmt: str, value: Any) -> str:
    return fmt.format(value) if value is not None else "—"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| target | goal | lecture | reference | float32 (= Keras) | int8 file¹ | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for model, targets in TARGETS.items():
        quant, twin = results[model][model], results[model][f"{model}_float32"]
        for t in targets:
            value = quant.get(t.key)
            ok = t.ok(value) if value is not None else False
            if t.key == "frechet":
                ok = abs(quant["frechet"] - twin["frechet"]) <= 0.1 * twin["frechet"]
                reference = f"real vs real {quant['frechet_real_halves']:.2f}"
            else:
                reference = t.reference
            lines.append(f"| {t.label} | {t.goal} | {t.lecture} | {reference} | {_fmt(t.fmt, twin.get(t.key))} | "
                         f"{_fmt(t.fmt, value)} | {'yes' if ok else 'NO'} |")
    lstm = results["lstm"]["lstm"]
    lines.append(f"| LSTM baselines on the same months | — | — | persistence {lstm['persistence_rmse']:.2f}, "
                 f"seasonal naive y[t-12] {lstm['seasonal_naive_rmse']:.2f}, naive growth "
                 f"{lstm['naive_growth_rmse']:.2f}, SARIMA {lstm.get('sarima_rmse', float('nan')):.2f}; "
                 f"best: {lstm['winner']} | — | — | — |")
    shares = ", ".join(f"{s:.1%}" for s in results["gan"]["gan"]["class_shares"])
    return ("\n".join(lines) + "\n\n¹ The quantized file the edge runs (the LSTM and the autoencoder are int16x8).\n"
            f"GAN class shares (int8, judged by the int8 CNN): {shares}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="the models folder to evaluate")
    parser.add_argument("--gan-samples", type=int, default=5000)
    args = parser.parse_args(argv)
    results = evaluate_all(args.out, args.gan_samples)
    print(table(results))
    failed = [t.label for m, ts in TARGETS.items() for t in ts
              if t.key != "frechet" and not t.ok(results[m][m].get(t.key))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
