"""The demo's report: PNG plots (matplotlib, Agg) and one HTML page that shows them with the summary."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sensor(root: Path, anomalies: list[dict], segments: list[dict], path: Path) -> Path:
    """Each reading's distance from the normal line y = 2x - 1, injected segments shaded, alerts in red."""
    plt = _plt()
    with open(root / "data" / "sensor-stream.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    residual = np.array([float(r["y"]) - (2 * float(r["x"]) - 1) for r in rows])
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(residual, ".", markersize=2, color="grey", label="reading: y - (2x - 1)")
    for s in segments:
        ax.axvspan(s["start"], s["end"], color="orange" if s["kind"] == "wrong" else "purple", alpha=0.15)
        ax.text(s["start"], residual.max(), s["kind"], fontsize=8, va="top")
    flagged = [m["seq"] for m in anomalies if m["is_anomaly"]]
    ax.plot(flagged, residual[flagged], "x", color="red", markersize=4, label="alert (is_anomaly)")
    ax.set_xlabel("reading")
    ax.set_title("sensor line1: injected segments (shaded) and the agent's alerts")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_forecast(forecasts: list[dict], path: Path) -> Path:
    plt = _plt()
    steps = np.array([m["step"] for m in forecasts])
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(steps, [m["observed"] for m in forecasts], color="black", label="observed")
    ax.plot(steps + 1, [m["forecast"] for m in forecasts], color="tab:blue", label="forecast (one step ahead)")
    ax.set_xlabel("month")
    ax.set_ylabel("passengers (thousands)")
    ax.set_title("airline series: the int8 LSTM step model on the edge")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_frames(root: Path, classes: list[dict], path: Path, count: int = 40) -> Path:
    plt = _plt()
    with np.load(root / "data" / "sample-frames.npz") as data:
        frames = data["frames"]
    shown = sorted(classes, key=lambda m: m["seq"])[:count]
    fig, axes = plt.subplots(4, 10, figsize=(12, 5.6))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, m in zip(axes.ravel(), shown):
        ax.imshow(frames[m["seq"] - 1], cmap="gray")
        ax.set_title(m["label"], fontsize=7, color="green" if m["label"] == m.get("truth") else "red")
    fig.suptitle("camera cam0: predicted labels (green right, red wrong)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_gan(root: Path, path: Path, count: int = 40) -> Path:
    """Samples of the committed int8 generator, run here with the edge runtime: for a class-conditional
    generator one row per class (row c asks for class c, named on the left), else `count` samples."""
    from edge.models.generator import Generator
    from edge.models.manifest import read_manifest
    from edge.models.runtime import TFLiteModel

    manifest = read_manifest(root / "models" / "manifest.json")
    entry = manifest.get("gan")
    generator = Generator(entry, TFLiteModel.from_entry(entry, root / "models"))
    rng = np.random.default_rng(0)
    names = [str(n) for n in entry.preprocess.get("labels", [])] if generator.label_input else []
    rows, columns = (len(names), 8) if names else (4, count // 4)
    classes = [r if names else None for r in range(rows) for _ in range(columns)]
    images = [generator.generate(rng.normal(size=entry.preprocess["latent_dim"]).astype(np.float32), c)
              for c in classes]
    plt = _plt()
    fig, axes = plt.subplots(rows, columns, figsize=(columns + 1.5 * bool(names), rows * 1.05), squeeze=False)
    for i, (ax, image) in enumerate(zip(axes.ravel(), images)):
        ax.imshow(image, cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        if names and i % columns == 0:
            ax.set_ylabel(names[i // columns], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("GAN generator (int8) samples" + (": one row per requested class" if names else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(folder: Path, watcher: Any, summary: dict[str, Any], root: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    anomalies = watcher.unique("/anomaly", "seq")
    forecasts = watcher.unique("forecast", "step")
    pictures = [
        ("Sensor stream with alerts", plot_sensor(root, anomalies, summary["segments"], folder / "sensor.png")),
        ("Forecast against the actual series", plot_forecast(forecasts, folder / "forecast.png")),
        ("Frames with predicted labels", plot_frames(root, watcher.of("/class"), folder / "frames.png")),
        ("GAN samples", plot_gan(root, folder / "gan.png")),
    ]
    rows = [
        ("Frames classified", summary["frames_classified"]),
        ("Frame accuracy", f"{summary['frame_accuracy']:.1%}"),
        ("Injected anomaly segments flagged", f"{summary['segments_detected']} of {len(summary['segments'])}"),
        ("False alerts", summary["false_alerts"]),
        ("Forecasts", summary["forecasts"]),
        ("Forecast RMSE (passengers)", f"{summary['forecast_rmse']:.1f}"),
        ("Errors reported", summary["errors"]),
    ]
    table = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    figures = "\n".join(f'<figure><img src="{p.name}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}'
                        f"</figcaption></figure>" for t, p in pictures)
    page = folder / "index.html"
    page.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgepipe demo report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}img{{max-width:100%}}
th{{text-align:left;padding-right:2em}}figure{{margin:2em 0}}</style></head>
<body><h1>edgepipe demo report</h1>
<table>{table}</table>
{figures}
<pre>{html.escape(json.dumps(summary, indent=2))}</pre>
</body></html>
""")
    return page
