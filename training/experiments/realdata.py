"""`python -m training realdata series|images|sensors`: the default recipes on real public data that ships
offline with the training dependencies, through the project's own CLI; prints the markdown tables
of docs/real-data.md. Slow (minutes per dataset): not part of `make test`.

Series: `realdata_series.py` (statsmodels' and sktime's bundled series; writes its docs section).
Images (folders written as PNG files in class sub-folders, trained through `--dataset folder:DIR`):
see `FOLDERS`; `photos` and `textures` need scikit-image (`pip install scikit-image`), which ships them.
Sensors: the autoencoder on real recordings, `realdata_sensors.py` (its own options).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.models.manifest import read_manifest
from training.argtypes import whole
from training.cli import main as train
from training.experiments import realdata_sensors, realdata_series

log = logging.getLogger(__name__)


def save_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def digits_folder(root: Path, size: int | None = None, shuffle_labels: bool = False) -> None:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 gray levels) as PNGs in class folders; `size`: an
    upscaled RGB copy (bicubic, as a phone photo of the digit would be smooth); `shuffle_labels`: the same
    images under random labels (a model must then be refused)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = np.random.default_rng(0).permutation(digits.target) if shuffle_labels else digits.target
    for i, (image, label) in enumerate(zip(digits.images, labels)):
        pixels = np.clip(image * 255 / 16, 0, 255).astype(np.uint8)
        if size:
            big = Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
            pixels = np.asarray(big)
        save_png(root / str(label) / f"{i:04d}.png", pixels)


def tiles(image: np.ndarray, side: int) -> list[np.ndarray]:
    """Non-overlapping side x side tiles (no tile shares a pixel with another: no near-duplicates across
    the trainer's train/test split)."""
    rows, cols = image.shape[0] // side, image.shape[1] // side
    return [image[r * side:(r + 1) * side, c * side:(c + 1) * side] for r in range(rows) for c in range(cols)]


def texture_folder(root: Path) -> None:
    """scikit-image's brick, grass and gravel photographs (512x512 gray) cut into 32x32 tiles."""
    from skimage import data

    for name in ("brick", "grass", "gravel"):
        for i, tile in enumerate(tiles(getattr(data, name)(), 32)):
            save_png(root / name / f"{i:03d}.png", tile)


def photo_folder(root: Path) -> None:
    """Six colour photographs -- scikit-image's astronaut, coffee, chelsea (a cat), rocket and scikit-learn's
    china and flower -- cut into 48x48 RGB tiles; the class is the photograph a tile comes from."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}
    photos.update({Path(f).stem: img for f, img in zip(load_sample_images().filenames, load_sample_images().images)})
    for name, photo in photos.items():
        for i, tile in enumerate(tiles(photo, 48)):
            save_png(root / name / f"{i:03d}.png", np.ascontiguousarray(tile))


FOLDERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "digits8": (digits_folder, "scikit-learn digits, 8x8 gray PNGs, 10 classes"),
    "digits64rgb": (lambda root: digits_folder(root, size=64), "the same digits upscaled to 64x64 RGB"),
    "textures": (texture_folder, "scikit-image brick/grass/gravel photos, 32x32 tiles, 3 classes"),
    "photos": (photo_folder, "six colour photos (scikit-image, scikit-learn), 48x48 tiles, 6 classes"),
    "digits8-shuffled": (lambda root: digits_folder(root, shuffle_labels=True), "digits under random labels"),
}


def image_row(name: str, work: Path) -> str:
    make, description = FOLDERS[name]
    folder = work / name
    make(folder)
    out = work / f"{name}-models"
    code = train(["cnn", "--dataset", f"folder:{folder}", "--out", str(out), "--report", str(work / "report")])
    count = sum(1 for _ in folder.rglob("*.png"))
    classes = sum(1 for p in folder.iterdir() if p.is_dir())
    if code != 0:
        left = sorted(p.name for p in out.glob("*")) if out.exists() else []
        return (f"| {name} | {description} | {count} | {classes} | refused (exit {code}) | — | — | — | — | "
                f"files left: {', '.join(left) or 'none'} |")
    entry = read_manifest(out / "manifest.json").get("cnn")
    m = entry.metrics
    return (f"| {name} | {description} | {count} | {classes} | exported | {m['test_samples']} | {m['chance']:.1%} | "
            f"{entry.keras_metrics['best_validation_accuracy']:.1%} | {m['accuracy']:.1%} | "
            f"{m['recipe']['epochs_run']} of {m['recipe']['epochs']} epochs x {m['recipe']['steps_per_epoch']} steps |")


IMAGES_HEADER = ("| folder | what | images | classes | result | held-out images | chance | Keras best validation | "
              "int8 file held-out accuracy | recipe |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sensors"]:
        return realdata_sensors.main(argv)
    parser = argparse.ArgumentParser(prog="python -m training realdata", description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["series", "images", "sensors"], help="sensors: see `realdata sensors --help`")
    parser.add_argument("--only", nargs="*", help="a subset of the datasets")
    parser.add_argument("--output", type=Path, help="also append the table (header first) to this file, row by "
                        "row as each dataset finishes (Keras prints its epochs on stdout)")
    parser.add_argument("--no-doc", action="store_true", help="series: print the table, leave docs/real-data.md alone")
    parser.add_argument("--jobs", type=whole(1), default=1, help="series: train this many series at once (processes)")
    args = parser.parse_args(argv)
    if args.part == "sensors":
        parser.error("name the part first: python -m training realdata sensors [its options]")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.part == "series":
        return realdata_series.run(args.only, args.output, not args.no_doc, args.jobs)
    lines = [IMAGES_HEADER]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or list(FOLDERS):
            lines.append(image_row(name, Path(tmp)))
            if args.output:
                args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from training.guard import guarded  # the CLI's error handling, run directly too

    sys.exit(guarded(main, sys.argv[1:]))
