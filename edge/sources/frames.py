"""Frame sources behind one interface: `open()`, `read() -> Frame | None` (None: end of stream), `close()`.

- `picamera2`            the Pi camera (imported lazily; on a Pi it comes from apt, `python3-picamera2`)
- `opencv:<index|file|url>`  OpenCV VideoCapture: a USB webcam, a video file, an RTSP URL (optional dependency)
- `folder:<dir>`         image files in name order (PNG/JPEG need Pillow; `.npy` works with numpy alone)
- `replay:<file.npz>`    a recorded stream: `frames` (N, H, W[, C]) uint8 and optional `labels` / `label_names`
- `gan`                  the GAN generator as a synthetic camera
Camera hardware cannot be tested here; everything up to `read()` is, with the file-based sources.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.sources import SourceSpec

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".npy"}


class SourceError(RuntimeError):
    """A source that cannot deliver (missing device, unreadable file); the camera pipeline retries it."""


@dataclass(frozen=True)
class Frame:
    seq: int
    image: np.ndarray
    truth: str | None = None  # the known label, for replayed test data


class FrameSource(Protocol):
    name: str

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class _FileSource:
    """A finite sequence of frames on disk, read in order (and again from the start with `loop`)."""

    kind = "file"

    def __init__(self, path: str, loop: bool = False) -> None:
        self.name = f"{self.kind}:{path}"
        self.path, self.loop = Path(path), loop
        self._i = 0
        self._seq = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def _frame(self, index: int, seq: int) -> Frame:
        raise NotImplementedError

    def read(self) -> Frame | None:
        if self._i >= len(self):
            if not self.loop:
                return None
            self._i = 0
        self._i += 1
        self._seq += 1
        return self._frame(self._i - 1, self._seq)

    def close(self) -> None:
        pass


class ReplaySource(_FileSource):
    """Frames recorded in an `.npz` file; labels, when present, travel with the frames."""

    kind = "replay"

    def open(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                self.frames = data["frames"]
                labels = data["labels"] if "labels" in data else None
                names = [str(n) for n in data["label_names"]] if "label_names" in data else None
        except (OSError, KeyError, ValueError) as exc:
            raise SourceError(f"{self.path}: cannot read replay file (expected .npz with 'frames'): {exc}") from None
        self.truth = [names[int(i)] if names else str(int(i)) for i in labels] if labels is not None else None

    def __len__(self) -> int:
        return len(self.frames)

    def _frame(self, index: int, seq: int) -> Frame:
        return Frame(seq, self.frames[index], self.truth[index] if self.truth else None)


class FolderSource(_FileSource):
    """Image files of a folder in name order; `.npy` arrays need numpy only, the rest Pillow."""

    kind = "folder"

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: image folder not found")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{self.path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    def __len__(self) -> int:
        return len(self.files)

    def _frame(self, index: int, seq: int) -> Frame:
        """A file that cannot be read (the folder unmounted mid-stream) is the camera failing -- closed,
        reported and reopened with backoff; one that cannot be decoded is a frame skipped (ValueError)."""
        try:
            return Frame(seq, decode_image(self.files[index]))
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read {self.files[index].name} ({exc.strerror or exc})") from None


def optional_import(module: str, hint: str) -> Any:
    """A camera library imported only when a source needs it; SourceError with how to install it otherwise."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SourceError(hint) from None


def decode_image(path: Path) -> np.ndarray:
    """An image file as an array; raises ValueError for an undecodable one (the pipeline skips it)."""
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    image_module = optional_import("PIL.Image", "reading PNG/JPEG frames needs Pillow (`pip install pillow`, or apt "
                                   "python3-pil)")
    try:
        with image_module.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:  # not a bad image: no file (the caller's to handle)
        raise
    except OSError as exc:
        raise ValueError(f"{path}: cannot decode image ({exc})") from None


class OpenCVSource:
    """cv2.VideoCapture: a device index ("0"), a video file or a stream URL (rtsp://...)."""

    def __init__(self, target: str, loop: bool = False) -> None:
        self.name = f"opencv:{target}"
        self.target = int(target) if target.isdigit() else target
        self.loop = loop
        self._seq = 0
        self.capture: Any = None

    def open(self) -> None:
        cv2 = optional_import("cv2", "OpenCV is not installed (`pip install opencv-python-headless`)")
        self._cv2 = cv2
        self.capture = cv2.VideoCapture(self.target)
        if not self.capture.isOpened():
            raise SourceError(f"{self.name}: cannot open")

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok:
            if isinstance(self.target, str) and not self.target.startswith(("rtsp:", "http:", "https:")):
                if not self.loop:
                    return None  # end of a video file
                self.capture.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self.capture.read()
            if not ok:
                raise SourceError(f"{self.name}: no frame (device gone?)")
        self._seq += 1
        return Frame(self._seq, image[..., ::-1])  # BGR -> RGB

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


class PiCamera2Source:
    """The Raspberry Pi camera through picamera2 (needs `python3-picamera2` from Raspberry Pi OS apt
    and a venv made with `--system-site-packages`)."""

    def __init__(self, size: tuple[int, int] = (320, 240)) -> None:
        self.name = "picamera2"
        self.size = size
        self._seq = 0
        self.camera: Any = None

    def open(self) -> None:
        picamera2 = optional_import("picamera2", "picamera2 is not importable: on Raspberry Pi OS `sudo apt install "
                                    "python3-picamera2` and create the venv with --system-site-packages")
        try:
            self.camera = picamera2.Picamera2()
            config = self.camera.create_preview_configuration(main={"size": self.size, "format": "RGB888"})
            self.camera.configure(config)
            self.camera.start()
        except Exception as exc:  # noqa: BLE001 - libcamera raises many kinds; all mean "no camera"
            raise SourceError(f"picamera2: cannot start the camera ({exc})") from None

    def read(self) -> Frame | None:
        try:
            image = self.camera.capture_array()
        except Exception as exc:  # noqa: BLE001
            raise SourceError(f"picamera2: capture failed ({exc})") from None
        self._seq += 1
        return Frame(self._seq, image)

    def close(self) -> None:
        if self.camera is not None:
            try:
                self.camera.stop()
                self.camera.close()
            except Exception:  # noqa: BLE001
                log.warning("picamera2: error while closing", exc_info=True)


class GeneratorSource:
    """The GAN generator as a camera: a new synthetic image per read, from seeded noise."""

    def __init__(self, generator: Any, seed: int = 0) -> None:
        self.name = "gan"
        self.generator = generator
        self.rng = np.random.default_rng(seed)
        self._seq = 0

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        latent = int(self.generator.entry.preprocess["latent_dim"])
        image = self.generator.generate(self.rng.normal(size=latent).astype(np.float32))
        self._seq += 1
        return Frame(self._seq, image)

    def close(self) -> None:
        pass


def make_frame_source(spec: SourceSpec, loop: bool = False, generator: Any = None) -> FrameSource:
    """The frame source for a parsed `[[camera]].source`."""
    if spec.kind == "replay":
        return ReplaySource(spec.arg, loop)
    if spec.kind == "folder":
        return FolderSource(spec.arg, loop)
    if spec.kind == "opencv":
        return OpenCVSource(spec.arg or "0", loop)
    if spec.kind == "picamera2":
        return PiCamera2Source()
    if spec.kind == "gan":
        if generator is None:
            raise SourceError("source 'gan' needs a generator model ('gan') in the manifest")
        return GeneratorSource(generator)
    raise SourceError(f"unknown camera source {spec.kind!r}")
