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

from edge.manifest import ManifestError, ModelEntry, TensorSpec

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

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "ok": self.ok, "vectors": self.vectors, "max_abs_diff": self.max_abs_diff,
                "atol": self.atol, "reason": self.reason}


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

    `model` is an `edge.runtime.TFLiteModel`; used by `training/export.py` and by the tests.
    """
    rng = np.random.default_rng(seed)
    vectors = []
    for _ in range(count):
        feeds = {spec.name: _random_input(rng, spec) for spec in entry.inputs}
        outputs = model.run_raw(feeds)
        vectors.append({"inputs": {k: encode(v) for k, v in feeds.items()},
                        "outputs": {s.name: encode(outputs[s.name]) for s in entry.outputs}})
    quantized = all(s.quantized for s in entry.outputs)
    return {"version": GOLDEN_VERSION, "atol": 1.0 if quantized else 1e-4, "units": "raw" if quantized else "float",
            "vectors": vectors}


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
        atol = float(golden["atol"])
        vectors = golden["vectors"]
        if not isinstance(vectors, list) or not vectors or not atol >= 0:
            raise ManifestError(f"{where}: needs a non-empty 'vectors' list and 'atol' >= 0")
        worst = 0.0
        for i, vector in enumerate(vectors):
            feeds = {s.name: decode(vector["inputs"][s.name], s, f"{where}.vectors[{i}].inputs.{s.name}")
                     for s in entry.inputs}
            got = model.run_raw(feeds)
            for spec in entry.outputs:
                want = decode(vector["outputs"][spec.name], spec, f"{where}.vectors[{i}].outputs.{spec.name}")
                diff = np.abs(got[spec.name].astype(np.float64) - want.astype(np.float64))
                worst = max(worst, float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf"))
    except ManifestError as exc:
        return GoldenResult(entry.name, False, 0, float("inf"), 0.0, str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        return GoldenResult(entry.name, False, 0, float("inf"), 0.0, f"{where}: malformed ({type(exc).__name__}: "
                            f"{exc})")
    if worst > atol:
        return GoldenResult(entry.name, False, len(vectors), worst, atol,
                            f"golden_mismatch: model {entry.name!r} gives outputs {worst:g} away from the "
                            f"exported file's (tolerance {atol:g}); wrong runtime, delegate or a modified file")
    return GoldenResult(entry.name, True, len(vectors), worst, atol)


def check(model: Any, entry: ModelEntry) -> GoldenResult:
    """`verify`, raising ManifestError with the reason when the outputs differ: the load-time gate."""
    result = verify(model, entry)
    if not result.ok:
        raise ManifestError(f"{model.path}: {result.reason}")
    return result
