"""Golden vectors: a few fixed inputs per model and the exact raw outputs the exported file gave.

Why: a sha256 proves the bytes are the ones the manifest names, not that this device runs them
the way the host did. A wrong runtime, an incompatible delegate, or a file edited with its hash
recomputed by hand all load and run -- and answer differently. Re-running the vectors at load
(and in the self-test) catches each of them before a single reading is scored.

The vectors are stored in the tensors' own dtypes (raw quantized integers for int8/int16 files),
base64 of the little-endian bytes, so the comparison is exact up to `atol` raw units; one
quantization step of slack covers kernels that round a half-way value differently.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.models.manifest import ManifestError, ModelEntry, TensorSpec

GOLDEN_VERSION = 1


@dataclass(frozen=True)
class GoldenResult:
    """The outcome of re-running one model's vectors: `ok`, the worst difference and why not."""

    model: str
    ok: bool
    vectors: int
    max_abs_diff: float
    atol: float
    reason: str = ""
    mean_abs_diff: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "ok": self.ok, "vectors": self.vectors, "max_abs_diff": self.max_abs_diff,
                "mean_abs_diff": self.mean_abs_diff, "atol": self.atol, "reason": self.reason}


def encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()).decode()


def decode(text: Any, spec: TensorSpec, where: str) -> np.ndarray:
    """A stored tensor back as an array of the spec's dtype and shape; ManifestError if it cannot be."""
    if not isinstance(text, str):
        raise ManifestError(f"{where}: expected base64 text, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ManifestError(f"{where}: not base64 ({exc})") from None
    dtype = np.dtype(spec.dtype).newbyteorder("<")
    expected = int(np.prod(spec.shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ManifestError(f"{where}: {len(raw)} bytes, tensor {spec.name!r} needs {expected}")
    return np.frombuffer(raw, dtype=dtype).astype(np.dtype(spec.dtype)).reshape(spec.shape)


def make(model: Any, entry: ModelEntry, count: int = 2, seed: int = 16) -> dict[str, Any]:
    """Fixed inputs (seeded, spread over each input's range) and the raw outputs `model` gives for them.

    `model` is an `edge.models.runtime.TFLiteModel`; used by `training/export.py` and by the tests.
    """
    rng = np.random.default_rng(seed)
    vectors = []
    for _ in range(count):
        feeds = {spec.name: _random_input(rng, spec) for spec in entry.inputs}
        outputs = model.run_raw(feeds)
        vectors.append({"inputs": {k: encode(v) for k, v in feeds.items()},
                        "outputs": {s.name: encode(outputs[s.name]) for s in entry.outputs}})
    atol, mean_atol = tolerance(entry, vectors)
    quantized = all(s.quantized for s in entry.outputs)
    return {"version": GOLDEN_VERSION, "atol": atol, "mean_atol": mean_atol, "units": "raw" if quantized else "float",
            "vectors": vectors}


def tolerance(entry: ModelEntry, vectors: list[dict[str, Any]]) -> tuple[float, float]:
    """(largest, mean) |difference| a faithful runtime may show, in the outputs' raw units.

    Measured, not guessed: tflite-runtime 2.14 (older Pi images) rounds int16x8 kernels up to 4 int16
    steps away from ai-edge-litert 2.3 and the generator's int8 pixels up to 8 steps (mean 0.02) for the
    5-epoch generator, 23 for the 12-epoch one (a few pixels where transposed convolutions round the
    other way), while a changed weight moves outputs by hundreds of steps and the mean by tens. The
    bounds keep a factor of 2-4 over those.
    """
    kinds = {np.dtype(s.dtype).name for s in entry.outputs}
    if kinds <= {"int8", "uint8"}:
        return 48.0, 1.0
    if kinds <= {"int8", "uint8", "int16"}:
        return 64.0, 8.0
    spread = max(float(np.ptp(decode(v["outputs"][s.name], s, "golden"))) for v in vectors for s in entry.outputs)
    return 1e-3 * max(spread, 1.0), 2.5e-4 * max(spread, 1.0)


def _random_input(rng: np.random.Generator, spec: TensorSpec) -> np.ndarray:
    """Integers over the middle half of the dtype's range; floats standard normal."""
    dtype = np.dtype(spec.dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = info.min // 2, info.max // 2
        return rng.integers(lo, hi, size=spec.shape, endpoint=True).astype(dtype)
    return rng.standard_normal(spec.shape).astype(dtype)


def verify(model: Any, entry: ModelEntry) -> GoldenResult:
    """Run `entry.golden` through the loaded `model`; ok with 0 vectors when the entry has none."""
    golden = entry.golden
    if not golden:
        return GoldenResult(entry.name, True, 0, 0.0, 0.0, "no golden vectors in the manifest")
    where = f"model {entry.name!r} golden"
    try:
        atol, mean_atol = float(golden["atol"]), float(golden.get("mean_atol", golden["atol"]))
        vectors = golden["vectors"]
        if not isinstance(vectors, list) or not vectors or not (atol >= 0 and mean_atol >= 0):
            raise ManifestError(f"{where}: needs a non-empty 'vectors' list, 'atol' and 'mean_atol' >= 0")
        diffs = [_diff(model, entry, vector, f"{where}.vectors[{i}]") for i, vector in enumerate(vectors)]
    except ManifestError as exc:
        return GoldenResult(entry.name, False, 0, float("inf"), 0.0, str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        return GoldenResult(entry.name, False, 0, float("inf"), 0.0, f"{where}: malformed ({type(exc).__name__}: "
                            f"{exc})")
    flat = np.concatenate(diffs)
    worst = float(flat.max()) if np.isfinite(flat).all() else float("inf")
    mean = float(flat.mean()) if np.isfinite(flat).all() else float("inf")
    if worst > atol or mean > mean_atol:
        return GoldenResult(entry.name, False, len(vectors), worst, atol,
                            f"golden_mismatch: model {entry.name!r} gives outputs up to {worst:g} (mean {mean:.3g}) "
                            f"away from the exported file's (tolerance {atol:g}, mean {mean_atol:g}); wrong runtime, "
                            "delegate or a modified file", mean)
    return GoldenResult(entry.name, True, len(vectors), worst, atol, mean_abs_diff=mean)


def _diff(model: Any, entry: ModelEntry, vector: dict[str, Any], where: str) -> np.ndarray:
    """|output - stored output| of one vector, every output tensor flattened into one array."""
    feeds = {s.name: decode(vector["inputs"][s.name], s, f"{where}.inputs.{s.name}") for s in entry.inputs}
    got = model.run_raw(feeds)
    return np.concatenate([np.abs(got[s.name].astype(np.float64) - decode(
        vector["outputs"][s.name], s, f"{where}.outputs.{s.name}").astype(np.float64)).ravel() for s in entry.outputs])


def check(model: Any, entry: ModelEntry) -> GoldenResult:
    """`verify`, raising ManifestError with the reason when the outputs differ: the load-time gate."""
    result = verify(model, entry)
    if not result.ok:
        raise ManifestError(f"{model.path}: {result.reason}")
    return result
