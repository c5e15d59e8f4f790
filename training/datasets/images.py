"""Image datasets for the CNN and the GAN, all as 28x28 (or the requested size) grayscale: uint8 for the
IDX and digits sets, and for your folders the float gray levels the edge computes from each file.

Sources, chosen by a spec string (`--dataset`):
- `fashion_mnist[:DIR]`  IDX files; default DIR is Debian's `dataset-fashion-mnist`
  (`/usr/share/datasets/fashion-mnist/`), else the Keras download (online).
- `mnist[:DIR]`          IDX files in DIR, else the Keras download (online).
- `digits`               scikit-learn's bundled 8x8 digits, upscaled to 28x28; offline, for tests.
- `folder:DIR`           your own labelled images, one sub-folder per class.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.models.classifier import resize_bilinear, to_grayscale
from training.datasets.errors import DatasetError

log = logging.getLogger(__name__)

FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_LABELS = [str(i) for i in range(10)]
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".tif", ".tiff", ".webp"}


@dataclass
class ImageDataset:
    """Images (N, H, W) with gray levels 0..255 (uint8, or float from the edge's resize), integer labels
    and the label names."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def subset(self, train: int | None = None, test: int | None = None) -> ImageDataset:
        """The first `train`/`test` samples (quick profiles and tests)."""
        return ImageDataset(self.name, self.x_train[:train], self.y_train[:train],
                            self.x_test[:test], self.y_test[:test], self.labels)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped): magic 0x0000 08 <ndim>, big-endian sizes, uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: IDX file not found") from None
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes (expected magic 00 00 08 <ndim>)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: IDX header says {shape} = {expected} bytes of data, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder}: expected IDX file {stem} or {stem}.gz")


def load_idx_folder(folder: Path | str, name: str, labels: list[str]) -> ImageDataset:
    """The four standard IDX files of MNIST/Fashion-MNIST from one folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder with IDX files not found")
    arrays = {key: read_idx(_find_idx(folder, stem)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not pair up")
        if y.max() >= len(labels):
            raise DatasetError(f"{folder}: {split} label {int(y.max())} out of range for {len(labels)} classes")
    return ImageDataset(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], labels)


def _keras_download(name: str, how_offline: str) -> ImageDataset:
    """The Keras download (cached in ~/.keras/datasets); needs the internet the first time."""
    try:
        import keras

        module = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}[name]
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
        raise DatasetError(f"{name}: Keras download failed ({type(exc).__name__}: {exc}). {how_offline}") from None
    labels = FASHION_LABELS if name == "fashion_mnist" else DIGIT_LABELS
    return ImageDataset(name, x_train, y_train, x_test, y_test, labels)


def load_fashion_mnist(folder: Path | str | None = None) -> ImageDataset:
    if folder is not None:
        return load_idx_folder(folder, "fashion_mnist", FASHION_LABELS)
    env = os.environ.get("EDGEPIPE_FASHION_MNIST_DIR")
    for candidate in [Path(env)] if env else [FASHION_DEBIAN_DIR]:
        if candidate.is_dir():
            log.info("Fashion-MNIST from %s", candidate)
            return load_idx_folder(candidate, "fashion_mnist", FASHION_LABELS)
    return _keras_download(
        "fashion_mnist",
        f"Offline: `sudo apt-get install dataset-fashion-mnist` (IDX files in {FASHION_DEBIAN_DIR}) "
        "or pass --dataset fashion_mnist:DIR with the four IDX files.")


def load_mnist(folder: Path | str | None = None) -> ImageDataset:
    folder = folder or os.environ.get("EDGEPIPE_MNIST_DIR")
    if folder:
        return load_idx_folder(folder, "mnist", DIGIT_LABELS)
    return _keras_download(
        "mnist", "Offline: put the four MNIST IDX files in a folder and pass --dataset mnist:DIR.")


def upscale_digits(images8: np.ndarray, size: int = 28) -> np.ndarray:
    """sklearn's 8x8 digits (0..16) -> size x size uint8 (0..255), centred with a margin like MNIST."""
    inner = (size * 6) // 7 // 8 * 8 or 8  # 24 for 28: MNIST digits sit in a 20-24 px box
    factor = inner // 8
    big = np.kron(images8, np.ones((factor, factor)))
    pad = (size - inner) // 2
    out = np.zeros((len(images8), size, size), dtype=np.float32)
    out[:, pad:pad + inner, pad:pad + inner] = big
    return np.clip(out * (255.0 / 16.0), 0, 255).astype(np.uint8)


def load_digits28(test_fraction: float = 0.2) -> ImageDataset:
    """scikit-learn's bundled digits (1,797 images, offline) upscaled to 28x28; a fixed split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = upscale_digits(digits.images)
    labels = digits.target.astype(np.uint8)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    n_test = int(len(images) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return ImageDataset("digits", images[train], labels[train], images[test], labels[test], DIGIT_LABELS)


def edge_gray(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A decoded frame -> gray levels 0..255 at `size`, with the edge's own functions (luma weights, plain
    bilinear resize), kept in the dtype they return: the model then sees in training exactly what
    the agent feeds it (Pillow's antialiased resize changed 1 prediction in 359)."""
    return resize_bilinear(to_grayscale(frame), size[0], size[1])


def load_image_folder(folder: Path | str, size: tuple[int, int] = (28, 28), test_fraction: float = 0.2,
                      invert: bool = False) -> ImageDataset:
    """Your own labelled images: FOLDER/<class name>/<image files>, converted to grayscale and resized
    the way the edge does it (`edge_gray`)."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: image folder not found (expected one sub-folder per class)")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if len(classes) < 2:
        raise DatasetError(f"{folder}: expected at least two class sub-folders, found {classes}")
    images, labels = [], []
    for index, cls in enumerate(classes):
        files = sorted(p for p in (folder / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{folder / cls}: class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for path in files:
            try:
                with Image.open(path) as img:
                    rgb = np.asarray(img.convert("RGB"))  # as the edge's folder camera decodes a file
            except (UnidentifiedImageError, OSError) as exc:
                raise DatasetError(f"{path}: cannot read image ({exc})") from None
            gray = edge_gray(rgb, size)
            images.append(255.0 - gray if invert else gray)
            labels.append(index)
    x, y = np.stack(images), np.asarray(labels, dtype=np.uint8)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    n_test = max(1, int(len(x) * test_fraction))
    return ImageDataset(f"folder:{folder.name}", x[order[n_test:]], y[order[n_test:]],
                        x[order[:n_test]], y[order[:n_test]], classes)


def load_image_dataset(spec: str) -> ImageDataset:
    """Resolve a `--dataset` spec: `fashion_mnist[:DIR]`, `mnist[:DIR]`, `digits` or `folder:DIR`."""
    kind, _, arg = spec.partition(":")
    if kind == "fashion_mnist":
        return load_fashion_mnist(arg or None)
    if kind == "mnist":
        return load_mnist(arg or None)
    if kind == "digits":
        return load_digits28()
    if kind == "folder":
        if not arg:
            raise DatasetError("folder: give the folder, e.g. --dataset folder:data/my-images")
        return load_image_folder(arg)
    raise DatasetError(f"unknown image dataset {spec!r}; use fashion_mnist[:DIR], mnist[:DIR], digits or folder:DIR")
