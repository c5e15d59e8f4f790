"""Camera frames -> the classifier's input, as the manifest (and the camera's config) say.

numpy only: grayscale by luma weights, bilinear resize, optional inversion (the datasets
are light objects on a dark background; a camera usually sees the opposite), and the
manifest's pixel scaling.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_grayscale(frame: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8/float -> (H, W) float32 in 0..255."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        return frame.astype(np.float32)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[..., 0].astype(np.float32)
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        return frame[..., :3].astype(np.float32) @ LUMA
    raise ValueError(f"frame of shape {frame.shape} is not an image (expected HxW, HxWx1, HxWx3 or HxWx4)")


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a (H, W) float image, pixel centres aligned (like OpenCV's INTER_LINEAR)."""
    h, w = image.shape
    if (h, w) == (height, width):
        return image
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def pixels_to_input(gray: np.ndarray, pre: dict[str, Any], invert: bool | None = None) -> np.ndarray:
    """float32 gray levels 0..255 -> model input values: optional inversion, the manifest's pixel scaling."""
    if pre.get("invert") if invert is None else invert:
        gray = 255.0 - gray
    return ((gray - float(pre["pixel_offset"])) / float(pre["pixel_scale"])).astype(np.float32)


def frame_to_input(frame: np.ndarray, pre: dict[str, Any], invert: bool | None = None) -> np.ndarray:
    """A camera frame -> float32 (1, H, W, 1) model input; `invert` overrides the manifest's."""
    gray = resize_bilinear(to_grayscale(frame), int(pre["height"]), int(pre["width"]))
    return pixels_to_input(gray, pre, invert)[None, :, :, None]
