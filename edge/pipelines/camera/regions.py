"""`[[camera.regions]]`: a named rectangle of the frame and the model that judges it.

The rectangle is `[x, y, width, height]`, in pixels (all integers) or in fractions of the frame
(any float, all within 0..1), so one config serves a camera whatever resolution it delivers. A
region is cropped from the full-resolution frame: the classifier's own resize (the one function
training uses too, `edge.models.classifier.resize_bilinear`) then brings the crop to the model's size,
so the model sees what it was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.fields import ConfigError, setting
from edge.models.classifier import Classifier
from edge.models.manifest import ManifestError


@dataclass
class RegionConfig:
    name: str = setting(name=True)
    rect: list = field(default_factory=list)  # [x, y, width, height]: pixels (integers) or fractions (floats)
    model: str = ""  # default: the camera's model
    motion_gate: bool = True  # classify only when the region changed (or `heartbeat` seconds passed)
    motion_threshold: float = setting(4.0, ge=0)  # mean gray-level change of the downscaled region
    heartbeat: float = setting(10.0, gt=0)  # seconds: classify at least this often, change or not
    confirm: int = setting(3, ge=1, le=1000)  # K: consecutive agreeing classifications that change the state
    min_confidence: float = setting(0.6, ge=0, le=1)  # c: each of them at least this confident
    publish_class: bool = False  # also every classification on vision/<camera>/<region>/class
    snapshot: bool = True  # a JPEG of the region at each state change (retained topic + disk)
    snapshot_frame: bool = False  # also the whole frame at each change (vision/<camera>/<region>/frame)
    snapshots_keep: int = setting(20, ge=1, le=100000)  # files kept on disk per region
    capture_uncertain: float = setting(0.0, ge=0, le=1)  # keep crops below this top-1 score (0: off)
    capture_keep: int = setting(500, ge=1, le=1_000_000)  # uncertain crops kept on disk per region

    def validate(self) -> None:
        rect_problem(self.rect)


def rect_problem(rect: Any) -> None:
    """ConfigError unless `rect` is [x, y, w, h] of finite numbers, in pixels or in fractions of the frame."""
    if not isinstance(rect, list) or len(rect) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in rect):
        raise ConfigError(f"rect: expected [x, y, width, height] (4 numbers), got {rect!r}")
    if not all(math.isfinite(v) for v in rect) or min(rect) < 0:
        raise ConfigError(f"rect: expected finite numbers >= 0, got {rect!r}")
    x, y, w, h = rect
    if w <= 0 or h <= 0:
        raise ConfigError(f"rect: width and height must be > 0, got {rect!r}")
    if is_fractional(rect) and (x + w > 1 + 1e-9 or y + h > 1 + 1e-9):
        raise ConfigError(f"rect: fractions of the frame must stay within it (x + width <= 1, y + height <= 1), "
                          f"got {rect!r}")


def resolution_problem(size: Any) -> None:
    """ConfigError unless `size` is [width, height] in pixels (a camera's `resolution`)."""
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int and 16 <= v <= 8192 for v in size)):
        raise ConfigError(f"resolution: expected [width, height], integers from 16 to 8192, got {size!r}")


def is_fractional(rect: list) -> bool:
    return any(isinstance(v, float) for v in rect)


@dataclass(frozen=True)
class Region:
    """A configured region, ready to cut crops from frames of any size."""

    name: str
    rect: tuple[float, float, float, float]
    fractional: bool

    @classmethod
    def of(cls, cfg: RegionConfig) -> Region:
        return cls(cfg.name, tuple(float(v) for v in cfg.rect), is_fractional(cfg.rect))  # type: ignore[arg-type]

    def bounds(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) in pixels; ValueError naming the region if it leaves the frame."""
        x, y, w, h = self.rect
        if self.fractional:
            left, top = round(x * width), round(y * height)
            right, bottom = max(left + 1, round((x + w) * width)), max(top + 1, round((y + h) * height))
        else:
            left, top, right, bottom = int(x), int(y), int(x + w), int(y + h)
        if right > width or bottom > height:
            raise ValueError(f"region {self.name!r} {list(self.rect)} lies outside the {width}x{height} frame")
        return top, bottom, left, right

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The region's pixels of a full-resolution frame (a view, no copy)."""
        if image.ndim not in (2, 3):
            raise ValueError(f"frame of shape {image.shape} is not an image")
        top, bottom, left, right = self.bounds(image.shape[0], image.shape[1])
        return image[top:bottom, left:right]


def build_regions(items: list[Any], where: str = "regions") -> list[RegionConfig]:
    """`[[camera.regions]]` tables -> RegionConfig (already-built ones pass through), names unique."""
    from edge.fields import build

    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected an array of tables ([[camera.regions]]), got {items!r}")
    built = [item if isinstance(item, RegionConfig) else build(RegionConfig, item, f"{where}[{i}]")
             for i, item in enumerate(items)]
    names = [r.name for r in built]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: names must be unique, got {names}")
    return built


def region_classifiers(cfg: Any, loader: Any, camera_classifier: Classifier) -> dict[str, Classifier]:
    """Each region's classifier (its `model`, or the camera's), verified to take grayscale input. Regions
    judged by one model share its interpreter: one thread runs them, one after the other."""
    loaded = {cfg.model: camera_classifier}
    for region in cfg.regions:
        name = region.model or cfg.model
        if name not in loaded:
            loaded[name] = Classifier(*loader.load(name, "classify", f"camera {cfg.name!r} region {region.name!r}"),
                                      invert=cfg.invert, top_k=cfg.top_k)
        colour = loaded[name].entry.preprocess.get("color", "grayscale")
        if loaded[name].entry.preprocess.get("channels", 1) != 1 or colour != "grayscale":
            raise ManifestError(f"camera {cfg.name!r} region {region.name!r}: model {name!r} takes {colour} input; "
                                "this agent feeds regions in grayscale only (the training side's folder recipe)")
    return {r.name: loaded[r.model or cfg.model] for r in cfg.regions}
