"""Region images: JPEG snapshots at state changes, PNG crops for training, both bounded on disk.

Encoding uses Pillow when it is installed (Raspberry Pi OS: `python3-pil`), else OpenCV
(`opencv-python-headless`); both are optional on the edge, imported only when an image is
written. Without either, states are still published: only the pictures are missing (logged once).
Files are named so that name order is time order, and each folder keeps its newest `keep` files.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import io
import logging
import re
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class NoEncoder(RuntimeError):
    """Neither Pillow nor OpenCV is importable."""


def _module(name: str) -> object | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 85) -> bytes:
    """An RGB (H, W, 3) or gray (H, W) uint8 image as JPEG or PNG bytes (Pillow, else OpenCV)."""
    pixels = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    pil = _module("PIL.Image")
    if pil is not None:
        out = io.BytesIO()
        options = {"quality": quality} if fmt == "jpeg" else {}
        pil.fromarray(pixels).save(out, format=fmt.upper(), **options)  # type: ignore[attr-defined]
        return out.getvalue()
    cv2 = _module("cv2")
    if cv2 is None:
        raise NoEncoder("writing JPEG/PNG needs Pillow (`pip install pillow`, apt python3-pil) or OpenCV")
    bgr = pixels[..., ::-1] if pixels.ndim == 3 else pixels
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []  # type: ignore[attr-defined]
    ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)  # type: ignore[attr-defined]
    if not ok:
        raise ValueError(f"OpenCV could not encode a {pixels.shape} image")
    return data.tobytes()


def safe_part(text: str) -> str:
    """A label or name as a file-name part: letters, digits, `-` and `_` only (no path, no `..`)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def stamp() -> str:
    """UTC time to the millisecond, sortable as text: 20261127T140501.123Z."""
    now = _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"


class ImageFolder:
    """A folder of images that keeps only its newest `keep` files of one prefix (None: all of them)."""

    def __init__(self, folder: Path, keep: int | None = None, prefix: str = "") -> None:
        self.folder, self.keep, self.prefix = Path(folder), keep, prefix
        self._n = 0

    def save(self, data: bytes, label: str, suffix: str) -> Path:
        """Write one image (via a temporary name, so a reader never sees half a file); prune the oldest."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._n += 1
        path = self.folder / f"{self.prefix}{stamp()}_{self._n:06d}_{safe_part(label)}.{suffix}"
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        partial.replace(path)
        if self.keep is not None:
            self.prune()
        return path

    def prune(self) -> None:
        files = sorted(p for p in self.folder.glob(f"{self.prefix}*") if not p.name.endswith(".part"))
        for old in files[: max(0, len(files) - int(self.keep or 0))]:
            old.unlink(missing_ok=True)
