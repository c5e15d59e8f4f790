"""The CNN classifier: camera frames -> label, score and top-k, and the frame preprocessing it shares
with training.

The image ops are numpy only (the trainer imports them to build its inputs, so both sides see the
same pixels): grayscale by luma weights, bilinear resize, optional inversion (the datasets are
light objects on a dark background; a camera usually sees the opposite), and the manifest's
pixel scaling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel, dequantize, quantize
from edge.models.wrapper import ModelWrapper, finite_array, matching_size

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


@dataclass(frozen=True)
class Classification:
    label: str
    index: int
    score: float
    top_k: list[dict[str, Any]]
    latency_ms: float


class Classifier(ModelWrapper):
    def __init__(self, entry: ModelEntry, model: TFLiteModel, invert: bool | None = None, top_k: int = 3) -> None:
        super().__init__(entry, model)
        self.labels: list[str] = [str(label) for label in entry.postprocess["labels"]]
        self._in_spec, self._out_spec = model.inputs[entry.inputs[0].name], model.outputs[entry.outputs[0].name]
        if len(self.labels) != self._out_spec.shape[-1]:
            raise ValueError(f"postprocess.labels has {len(self.labels)} labels, the model has "
                             f"{self._out_spec.shape[-1]} outputs")
        self.invert = invert
        self.top_k = top_k
        pre = entry.preprocess
        self._size = (matching_size(pre["height"], self._in_spec.shape[1], "preprocess.height"),
                      matching_size(pre["width"], self._in_spec.shape[2], "preprocess.width"))
        finite_array(pre["pixel_offset"], "preprocess.pixel_offset")
        finite_array(pre["pixel_scale"], "preprocess.pixel_scale", nonzero=True)
        # A uint8 grayscale frame at the model's size (a Pi camera set to it, a replay file) needs no
        # resize, so each of the 256 gray levels maps to one input value: one table lookup per frame
        # instead of five array passes. Built with the same functions as the general path: bit-exact.
        self._table = quantize(pixels_to_input(np.arange(256, dtype=np.float32), pre, invert), self._in_spec)

    def _to_input(self, frame: np.ndarray) -> np.ndarray:
        """A frame -> the input tensor's values (quantized when the tensor is)."""
        if frame.dtype == np.uint8 and frame.shape[:2] == self._size and (frame.ndim == 2 or frame.shape[2] == 1):
            return self._table[frame.reshape(self._size)].reshape(self._in_spec.shape)
        x = frame_to_input(frame, self.entry.preprocess, self.invert)
        return quantize(x.reshape(self._in_spec.shape), self._in_spec)

    def infer(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """Preprocess and invoke: the model's raw output and the milliseconds both took.

        The camera pipeline runs this in its inference thread and `postprocess` in its
        publishing thread, so only this part stands between one frame's invoke and the next.
        """
        started = time.perf_counter()
        x = self._to_input(frame)
        invoked = time.perf_counter()
        raw = self.model.run_one_raw(x)
        done = time.perf_counter()
        self.latency.add((done - invoked) * 1000)
        return raw, (done - started) * 1000

    def postprocess(self, raw: np.ndarray, latency_ms: float) -> Classification:
        """Raw output -> label, score and top-k (ties between int8 scores go to the lowest index, as argmax)."""
        scores = dequantize(raw, self._out_spec)[0].tolist()
        # sorted() is stable with reverse=True too; on ten numbers it beats numpy's call overhead
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[: self.top_k]
        top = [{"label": self.labels[i], "index": i, "score": round(scores[i], 5)} for i in order]
        best = order[0]
        return Classification(self.labels[best], best, scores[best], top, latency_ms)

    def classify(self, frame: np.ndarray) -> Classification:
        return self.postprocess(*self.infer(frame))
