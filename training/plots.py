"""Report pictures written during training (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_curves(history: dict[str, Sequence[float]], title: str, path: Path) -> Path:
    """Every loss/metric series Keras recorded, one line each, log scale for losses."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, values in sorted(history.items()):
        ax.plot(np.arange(1, len(values) + 1), values, label=key)
    ax.set_xlabel("epoch")
    if all("loss" in k for k in history):
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], title: str, path: Path) -> Path:
    n = len(labels)
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (y_true.astype(int), y_pred.astype(int)), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_title(title)
    return _save(fig, path)


def forecast(actual: np.ndarray, series: dict[str, tuple[np.ndarray, np.ndarray]], split: int, title: str,
             path: Path) -> Path:
    """The real series and each forecast (x positions, values); a line marks the train/test split."""
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(np.arange(len(actual)), actual, color="black", label="actual")
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label)
    ax.axvline(split, color="grey", linestyle="--", label="train | test")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def error_histogram(errors: dict[str, np.ndarray], threshold: float, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    upper = max(float(np.percentile(e, 99.9)) for e in errors.values())
    bins = np.logspace(np.log10(max(min(float(e.min()) for e in errors.values()), 1e-7)), np.log10(upper), 60)
    for label, values in errors.items():
        ax.hist(values, bins=bins, alpha=0.5, label=label)
    ax.axvline(threshold, color="red", label=f"threshold {threshold:.4g}")
    ax.set_xscale("log")
    ax.set_xlabel("reconstruction error (MSE per reading)")
    ax.set_ylabel("readings")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def image_grid(images: np.ndarray, path: Path, title: str = "", labels: Sequence[str] | None = None,
               columns: int = 10) -> Path:
    """Images (N, H, W) in [0, 255] or [0, 1] as a grid, optional caption per image."""
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows * (1.15 if labels else 1)))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray", interpolation="nearest")
            if labels is not None:
                ax.set_title(labels[i], fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
