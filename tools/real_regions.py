"""Issue 17 on real photographs: the region flow (capture -> folder CNN -> the agent's crop and resize) on
scikit-image's bundled texture photos (`skimage.data.brick`, `grass`, `gravel`: 512x512 gray photographs).

Each "camera frame" (320x240) shows a 160x160 window of one photo in a region of interest on a noisy
background. Training frames take their windows from the top 300 rows of each photo, held-out frames from
the bottom 192 rows: the held-out accuracy is measured on parts of the photos the model never saw.
Crops are captured with `edge.pipelines.camera.capture` from a `folder:` camera, the CNN is trained by the
training CLI's folder recipe, and the held-out frames are classified by the agent's own `Region.crop` + `Classifier`.

    python -m tools.real_regions [--work DIR] [--epochs N]     (needs scikit-image: the `realdata` extra)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge.config import parse_config
from edge.models.classifier import Classifier
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.pipelines.camera.regions import Region

TEXTURES = ("brick", "grass", "gravel")
RECT = [120, 40, 160, 160]
ROOT = Path(__file__).resolve().parent.parent


def frames(photo: np.ndarray, rows: tuple[int, int], count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` 240x320 RGB frames, each with a random 160x160 window of `photo` (top row within `rows`)."""
    out = []
    x, y, w, h = RECT
    for _ in range(count):
        top = int(rng.integers(rows[0], rows[1] - h + 1))
        left = int(rng.integers(0, photo.shape[1] - w + 1))
        frame = rng.normal(128, 12, size=(240, 320)).clip(0, 255)
        frame[y:y + h, x:x + w] = photo[top:top + h, left:left + w] * rng.uniform(0.85, 1.15)  # lighting
        out.append(np.repeat(frame.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2))
    return out


def write_frames(folder: Path, images: list[np.ndarray]) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return folder


def run(work: Path, epochs: int, per_class: int = 150, held_out: int = 60) -> dict:
    import skimage.data

    from edge.pipelines.camera.capture import capture

    rng = np.random.default_rng(0)
    tests: dict[str, list[np.ndarray]] = {}
    for name in TEXTURES:
        photo = getattr(skimage.data, name)()
        source = write_frames(work / "frames" / name, frames(photo, (0, 300), per_class, rng))
        config = parse_config({"camera": [{"name": "cam0", "source": f"folder:{source}",
                                           "regions": [{"name": "patch", "rect": RECT}]}]})
        got = capture(config.camera, "cam0", "patch", name, per_class, 0.0, work / "dataset")
        print(f"{name}: captured {got.saved} crops into {got.folder}")
        tests[name] = frames(photo, (320, 512), held_out, rng)
    models = work / "models"
    models.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "training", "cnn", "--dataset", f"folder:{work / 'dataset'}", "--epochs",
                    str(epochs), "--out", str(models), "--report", str(work / "report")], check=True, cwd=ROOT)
    entry = read_manifest(models / "manifest.json").get("cnn")
    classifier = Classifier(entry, TFLiteModel.from_entry(entry, models))
    region = Region(name="patch", rect=tuple(float(v) for v in RECT), fractional=False)  # type: ignore[arg-type]
    confusion = np.zeros((len(TEXTURES), len(TEXTURES)), int)
    for truth, images in tests.items():
        for image in images:
            label = classifier.classify(region.crop(image)).label
            confusion[TEXTURES.index(truth), classifier.labels.index(label)] += 1
    accuracy = float(np.trace(confusion) / confusion.sum())
    return {"accuracy": accuracy, "confusion": confusion.tolist(), "held_out": int(confusion.sum()),
            "train_crops": per_class * len(TEXTURES), "labels": classifier.labels,
            "training_held_out_accuracy": entry.metrics.get("accuracy")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.real_regions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="keep the frames, crops and models here (default: a temp dir)")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    if args.work:
        result = run(args.work, args.epochs)
    else:
        with tempfile.TemporaryDirectory(prefix="edgepipe-real-regions-") as tmp:
            result = run(Path(tmp), args.epochs)
    print(f"held-out frames (bottom rows of the photos, never seen): {result['held_out']}, accuracy "
          f"{result['accuracy']:.1%}; labels {result['labels']}; confusion (rows truth) {result['confusion']}; "
          f"the training CLI's own held-out split: {result['training_held_out_accuracy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
