"""Frame sources behind one interface: `open()`, `read() -> Frame | None` (None: end of stream), `close()`.

- `picamera2`            the Pi camera (imported lazily; on a Pi it comes from apt, `python3-picamera2`)
- `opencv:<index|file|url>`  OpenCV VideoCapture: a USB webcam, a video file, an RTSP URL (optional dependency)
- `folder:<dir>`         image files in name order (PNG/JPEG need Pillow; `.npy` works with numpy alone), or
                         class sub-folders: a labelled replay (truth = the folder's name)
- `replay:<file.npz>`    a recorded stream: `frames` (N, H, W[, C]) uint8 and optional `labels` / `label_names`
- `gan[:classes=0,1,2,rate=5]`  the GAN generator as a synthetic camera; labelled frames of the classes asked for
Camera hardware cannot be tested here; everything up to `read()` is, with the file-based sources.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.sources import GanOptions, SourceSpec, gan_options, is_video_file

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".npy"}


class SourceError(RuntimeError):
    """A source that cannot deliver (missing device, unreadable file); the camera pipeline retries it."""


@dataclass(frozen=True)
class Frame:
    seq: int
    image: np.ndarray
    truth: str | None = None  # the known label, for replayed test data
    t: float | None = None  # seconds into a recorded video (its own clock); None: live, the wall clock applies


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
    """Image files of a folder in name order; `.npy` arrays need numpy only, the rest Pillow.

    A folder of class sub-folders (the trainer's layout, `training/datasets/images.py`) is a
    labelled replay: every image of every class, classes and files in name order, each with its
    truth = its folder's name (published beside the class, so accuracy can be counted). Hidden
    folders and `_unlabelled`-style ones are skipped, as the trainer skips them.
    """

    kind = "folder"

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: image folder not found")
        self.files = _images(self.path)
        self.labels: list[str | None] = [None] * len(self.files)
        if not self.files:
            classes = sorted(p for p in self.path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
            pairs = [(image, folder.name) for folder in classes for image in _images(folder)]
            self.files, self.labels = [p for p, _ in pairs], [label for _, label in pairs]
        if not self.files:
            raise SourceError(f"{self.path}: no images, directly or in class sub-folders "
                              f"({', '.join(sorted(IMAGE_SUFFIXES))})")

    def __len__(self) -> int:
        return len(self.files)

    def _frame(self, index: int, seq: int) -> Frame:
        """A file that cannot be read (the folder unmounted mid-stream) is the camera failing -- closed,
        reported and reopened with backoff; one that cannot be decoded is a frame skipped (ValueError)."""
        try:
            return Frame(seq, decode_image(self.files[index]), self.labels[index])
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read {self.files[index].name} ({exc.strerror or exc})") from None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


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
    """cv2.VideoCapture: a device index ("0"), a video file or a stream URL (rtsp://...).

    A video file is read to its end (`read()` -> None) or again from the start with `loop`; its
    frames carry their time in the video (`Frame.t`, from the file's frame rate), so time-based
    settings (a region's heartbeat, capture's `--every`) mean the same on a replay as live."""

    def __init__(self, target: str, loop: bool = False) -> None:
        self.name = f"opencv:{target}"
        self.target = int(target) if target.isdigit() else target
        self.is_file = is_video_file(target)
        self.loop = loop
        self._seq = 0
        self.fps = 0.0
        self.capture: Any = None

    def open(self) -> None:
        cv2 = optional_import("cv2", "OpenCV is not installed (`pip install opencv-python-headless`)")
        self._cv2 = cv2
        if self.is_file and not Path(str(self.target)).is_file():
            raise SourceError(f"{self.name}: video file not found")
        self.capture = cv2.VideoCapture(self.target)
        if not self.capture.isOpened():
            raise SourceError(f"{self.name}: cannot open")
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if self.is_file and 0 < fps < 1000 else 0.0

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok:
            if self.is_file:
                if not self.loop:
                    return None  # end of a video file
                self.capture.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self.capture.read()
            if not ok:
                raise SourceError(f"{self.name}: no frame (device gone?)")
        self._seq += 1
        t = (self._seq - 1) / self.fps if self.fps else None
        return Frame(self._seq, image[..., ::-1], t=t)  # BGR -> RGB

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


class PiCamera2Source:
    """The Raspberry Pi camera through picamera2 (needs `python3-picamera2` from Raspberry Pi OS apt
    and a venv made with `--system-site-packages`).

    One main stream at the camera's `resolution`, RGB: regions are cut from it at full resolution, and
    the whole-frame CNN resizes it anyway, so a lores stream would add a second buffer and nothing the
    agent reads. Its format is "BGR888", which libcamera lays out as [R, G, B] per pixel (its "RGB888"
    is [B, G, R]): frames are RGB like every other source's."""

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
            config = self.camera.create_preview_configuration(main={"size": tuple(self.size), "format": "BGR888"})
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
    """The GAN generator as a camera: a new synthetic image per read, from seeded noise.

    `gan:classes=...` asks a class-conditional generator for those classes in turn, and each frame
    carries its class name as `truth` (as a labelled replay does): a labelled camera that needs no
    dataset. A conditional generator asked for no classes draws them uniformly, also labelled.
    """

    def __init__(self, generator: Any, options: GanOptions | None = None) -> None:
        self.options = options or GanOptions()
        self.name = "gan"
        self.rate = self.options.rate
        self.rng = np.random.default_rng(self.options.seed)
        self._seq = 0
        self.generator = generator  # through the setter: the classes are checked against this generator

    @property
    def generator(self) -> Any:
        return self._generator

    @generator.setter
    def generator(self, generator: Any) -> None:
        check_gan_classes(self.options, generator)
        self._generator = generator

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        generator = self._generator  # read once: a swap takes effect between two frames
        latent = int(generator.entry.preprocess["latent_dim"])
        label = self.options.classes[self._seq % len(self.options.classes)] if self.options.classes else None
        if label is None and generator.label_input:
            label = generator.draw_label()
        image = generator.generate(self.rng.normal(size=latent).astype(np.float32), label)
        self._seq += 1
        return Frame(self._seq, image, None if label is None else class_name(generator, label))

    def close(self) -> None:
        pass


def class_name(generator: Any, label: int) -> str:
    """A conditional generator's class as the classifier names it (the manifest's `labels`), else its index."""
    names = generator.entry.preprocess.get("labels") or []
    return str(names[label]) if label < len(names) else str(label)


def check_gan_classes(options: GanOptions, generator: Any) -> None:
    """ValueError unless the generator can draw every class the source asks for."""
    if not options.classes:
        return
    if not generator.label_input:
        raise ValueError(f"source gan:classes=...: model {generator.entry.name!r} is unconditional (it takes no "
                         "class label); train the default profile's conditional generator")
    if max(options.classes) >= generator.num_classes:
        count = generator.num_classes
        raise ValueError(f"source gan: class {max(options.classes)} is out of range: model "
                         f"{generator.entry.name!r} has {count} classes (0-{count - 1})")


def make_frame_source(spec: SourceSpec, loop: bool = False, generator: Any = None,
                      size: tuple[int, int] = (320, 240)) -> FrameSource:
    """The frame source for a parsed `[[camera]].source` (`size`: the Pi camera's resolution)."""
    if spec.kind == "replay":
        return ReplaySource(spec.arg, loop)
    if spec.kind == "folder":
        return FolderSource(spec.arg, loop)
    if spec.kind == "opencv":
        return OpenCVSource(spec.arg or "0", loop)
    if spec.kind == "picamera2":
        return PiCamera2Source(size)
    if spec.kind == "gan":
        if generator is None:
            raise SourceError("source 'gan' needs a generator model ('gan') in the manifest")
        return GeneratorSource(generator, gan_options(spec.arg))
    raise SourceError(f"unknown camera source {spec.kind!r}")
