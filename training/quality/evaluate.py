"""`python -m training evaluate`: every quality target, measured on the committed `.tflite` files.

One table: the lecture's figure, reference figures, the float32 twin (which equals the Keras
model within 1e-4, see the manifest's parity), and the quantized file the edge runs. Nothing
here retrains; the Keras column of the training table is in the manifest (`keras_metrics`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.models.manifest import Manifest, ModelEntry, read_manifest
from edge.models.runtime import TFLiteModel
from training.argtypes import whole
from training.datasets.images import load_image_dataset
from training.datasets.sensors import lecture_sensor_data
from training.datasets.series import load_series
from training.paths import MODELS_DIR
from training.quality.baselines import baseline_metrics, winner
from training.quality.evaluation import (
    accuracy,
    classify,
    forecast_metrics,
    forecaster_run,
    lecture_targets,
    reconstruction_errors,
)
from training.quality.gan import SAMPLES, GeneratorSpec, Judge
from training.quality.gan import measure as measure_generator
from training.tflite import count_macs, run_batch

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
    #: a reference figure computed with the value (e.g. real vs real), from the int8 file's results
    reference_of: Callable[[dict[str, Any]], str] | None = None

    def met(self, value: Any) -> bool:
        return value is not None and bool(self.ok(value))


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
        Target("GAN Fréchet distance to 2,000 real test images (CNN log-probabilities)", "frechet", "<= 20",
               lambda v: v <= 20, "{:.1f}", "dense GAN: 156",
               reference_of=lambda q: f"real train {q['frechet_real']:.1f}, blurred 3x3 {q['frechet_blurred']:.1f}, "
               f"noise sd 40 {q['frechet_noised']:.1f}"),
        Target("GAN class agreement (CNN's class = requested class)", "class_agreement", ">= 90%",
               lambda v: v >= 0.90, "{:.1%}"),
        Target("GAN smallest class share (uniformly drawn labels, CNN's classes)", "min_class_share", ">= 8%",
               lambda v: v >= 0.08, "{:.1%}", "dense GAN: 2.8%", "uniform: 10%"),
        Target("GAN int8 FD / float32 FD", "frechet_ratio_vs_float32", "0.90-1.10", lambda v: 0.9 <= v <= 1.1,
               "{:.3f}", "dense GAN: 1.00"),
        Target("GAN FD in the CNN's penultimate features (128 numbers)", "frechet_penultimate", "report",
               lambda v: True, "{:.1f}", reference_of=lambda q: f"real train {q['frechet_penultimate_real']:.1f}"),
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
    errors = {k: reconstruction_errors(lambda z: run_batch(model, entry.inputs[0].name, z)[entry.outputs[0].name],
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


def gan_quality(manifest: Manifest, models_dir: Path, n: int = SAMPLES) -> dict[str, dict[str, Any]]:
    """Both generator files judged by the committed float32 CNN (training/quality/gan.py), and the
    int8 file's FD as a ratio of its float32 twin's."""
    judge = Judge(manifest, models_dir, n)
    results = {name: measure_generator(TFLiteModel.from_entry(manifest.get(name), models_dir),
                             GeneratorSpec.of(manifest.get(name)), judge) for name in ("gan", "gan_float32")}
    results["gan"]["frechet_ratio_vs_float32"] = results["gan"]["frechet"] / results["gan_float32"]["frechet"]
    return results


def evaluate_all(models_dir: Path = MODELS_DIR, gan_samples: int = SAMPLES) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {variant: metrics}} for the quantized file and its float32 twin."""
    manifest = read_manifest(models_dir / "manifest.json")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name, measure in (("cnn", cnn_quality), ("autoencoder", autoencoder_quality), ("lstm", lstm_quality)):
        results[name] = {}
        for variant in (name, f"{name}_float32"):
            entry = manifest.get(variant)
            results[name][variant] = {**measure(entry, TFLiteModel.from_entry(entry, models_dir)),
                                      "variant": entry.variant}
    results["gan"] = gan_quality(manifest, models_dir, gan_samples)
    results["gan"]["gan"]["variant"] = manifest.get("gan").variant
    return results


def _fmt(fmt: str, value: Any) -> str:
    return fmt.format(value) if value is not None else "—"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| target | goal | lecture | reference | float32 (= Keras) | quantized file¹ | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for model, targets in TARGETS.items():
        quant, twin = results[model][model], results[model][f"{model}_float32"]
        for t in targets:
            value = quant.get(t.key)
            ok = t.met(value)
            reference = t.reference_of(quant) if t.reference_of else t.reference
            lines.append(f"| {t.label} | {t.goal} | {t.lecture} | {reference} | {_fmt(t.fmt, twin.get(t.key))} | "
                         f"{_fmt(t.fmt, value)} | {'yes' if ok else 'NO'} |")
    lstm = results["lstm"]["lstm"]
    lines.append(f"| LSTM baselines on the same months | — | — | persistence {lstm['persistence_rmse']:.2f}, "
                 f"seasonal naive y[t-12] {lstm['seasonal_naive_rmse']:.2f}, naive growth "
                 f"{lstm['naive_growth_rmse']:.2f}, SARIMA {lstm.get('sarima_rmse', float('nan')):.2f}; "
                 f"best: {lstm['winner']} | — | — | — |")
    gan = results["gan"]["gan"]
    shares = ", ".join(f"{s:.1%}" for s in gan["class_shares"])
    agreement = ", ".join(f"{s:.0%}" for s in gan.get("class_agreement_per_class", []))
    variants = ", ".join(f"{model} {results[model][model]['variant']}" for model in TARGETS
                         if "variant" in results[model][model])
    gan_variant = gan.get("variant", "quantized")
    return ("\n".join(lines) + f"\n\n¹ The quantized file the edge runs: {variants} (int16x8: int8 weights, int16 "
            "activations).\n"
            f"GAN class shares ({gan_variant} generator, uniformly drawn labels, judged by the float32 CNN): {shares}\n"
            + (f"GAN class agreement per requested class ({gan_variant}): {agreement}\n" if agreement else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="the models folder to evaluate")
    parser.add_argument("--gan-samples", type=whole(2), default=SAMPLES)
    args = parser.parse_args(argv)
    results = evaluate_all(args.out, args.gan_samples)
    print(table(results))
    failed = [t.label for m, ts in TARGETS.items() for t in ts if not t.met(results[m][m].get(t.key))]
    return 1 if failed else 0


if __name__ == "__main__":
    from training.guard import guarded  # the CLI's error handling, run directly too

    sys.exit(guarded(main, sys.argv[1:]))
