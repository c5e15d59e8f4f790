"""The TFLite runtime shim and the one class that runs a manifest-described model.

A Raspberry Pi has only a TFLite runtime: `ai_edge_litert` (current, wheels for
Python 3.11-3.13 on aarch64), or `tflite_runtime` on older systems. On a host with
TensorFlow we can fall back to `tensorflow.lite`; that is the only place in `edge/`
allowed to mention TensorFlow, and it is imported only when both runtimes are absent.

`TFLiteModel` holds one interpreter for the life of the process (never one per
frame), addresses tensors by their *signature* names (input order in a flatbuffer
is not the order you declared them), checks the file against the manifest, and
quantizes/dequantizes with each tensor's own scale and zero point.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.models.manifest import ManifestError, ModelEntry, TensorSpec, verify_file

log = logging.getLogger(__name__)

#: tried in this order; EDGEPIPE_RUNTIME=<name> forces one (benchmarks, tests)
RUNTIMES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)


class RuntimeUnavailable(RuntimeError):
    """No TFLite runtime could be imported."""


@dataclass(frozen=True)
class Runtime:
    name: str
    version: str
    interpreter_cls: Any


_RUNTIME: Runtime | None = None


def load_runtime(prefer: str | None = None) -> Runtime:
    """Import the first available runtime (cached); say which one in the log."""
    global _RUNTIME
    prefer = prefer or os.environ.get("EDGEPIPE_RUNTIME") or None
    if _RUNTIME is not None and (prefer is None or prefer == _RUNTIME.name):
        return _RUNTIME
    candidates = [r for r in RUNTIMES if prefer is None or r[0] == prefer]
    if not candidates:
        raise RuntimeUnavailable(f"unknown runtime {prefer!r}; choose one of {[r[0] for r in RUNTIMES]}")
    errors = []
    for name, module_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        interpreter_cls = module.Interpreter
        top = importlib.import_module(name)
        version = getattr(top, "__version__", "unknown")
        runtime = Runtime(name, version, interpreter_cls)
        log.info("TFLite runtime: %s %s", name, version)
        if prefer is None:
            _RUNTIME = runtime
        return runtime
    raise RuntimeUnavailable(
        "no TFLite runtime found; install one with `pip install ai-edge-litert` "
        "(or `tflite-runtime` on Python <= 3.11 with numpy<2). Tried: " + "; ".join(errors)
    )


_INT_RANGE: dict[str, tuple[int, int]] = {}  # dtype name -> (min, max); np.iinfo is slow on the per-frame path


def quantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float -> the tensor's integer type with its scale/zero point (identity for float)."""
    if not spec.quantized:
        return np.asarray(values, dtype=spec.dtype)
    dtype = np.dtype(spec.dtype)
    if dtype.name not in _INT_RANGE:
        _INT_RANGE[dtype.name] = (np.iinfo(dtype).min, np.iinfo(dtype).max)
    lo, hi = _INT_RANGE[dtype.name]
    q = np.asarray(values, dtype=np.float32) / np.float32(spec.scale)  # a new array: the in-place steps below are safe
    np.rint(q, out=q)
    q += spec.zero_point
    np.clip(q, lo, hi, out=q)
    return q.astype(dtype)


def dequantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The tensor's integer values -> float32 (identity for float tensors)."""
    if not spec.quantized:
        return np.asarray(values, dtype=np.float32)
    return (np.asarray(values, dtype=np.float32) - spec.zero_point) * np.float32(spec.scale)


def tensor_specs(details: Mapping[str, Mapping[str, Any]]) -> list[TensorSpec]:
    """Signature tensor details (name -> details) as manifest tensor specs."""
    specs = []
    for name, d in details.items():
        scale, zero_point = d.get("quantization", (0.0, 0))
        specs.append(TensorSpec(name, tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name,
                                float(scale), int(zero_point)))
    return specs


_NOTICES_SEEN = False


@contextlib.contextmanager
def native_notices_to_log() -> Iterator[None]:
    """The runtime's C++ side prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to the
    process's stderr once, with no Python switch to turn it off; on a Pi that line lands in the journal
    between the agent's own. Around the first interpreter, stderr is caught and its lines are re-logged
    (INFO lines at DEBUG, anything else as a warning), so nothing is lost and the log stays the agent's."""
    global _NOTICES_SEEN
    if _NOTICES_SEEN:
        yield
        return
    _NOTICES_SEEN = True
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("utf-8", "replace").splitlines():
                (log.debug if line.startswith("INFO:") else log.warning)("runtime: %s", line)


class TFLiteModel:
    """One `.tflite` file, one interpreter, addressed by signature tensor names."""

    def __init__(self, path: Path | str, *, num_threads: int | None = None, signature: str | None = None,
                 runtime: Runtime | None = None) -> None:
        self.path = Path(path)
        self.runtime = runtime or load_runtime()
        try:
            with native_notices_to_log():
                self.interpreter = self.runtime.interpreter_cls(model_path=str(self.path), num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ManifestError(f"{self.path}: not a loadable TFLite model ({exc})") from None
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise ManifestError(f"{self.path}: the model has no signature (export it with a serving signature)")
        self.signature = signature or next(iter(signatures))
        if self.signature not in signatures:
            raise ManifestError(f"{self.path}: no signature {self.signature!r} (has {list(signatures)})")
        runner = self.interpreter.get_signature_runner(self.signature)
        in_details, out_details = runner.get_input_details(), runner.get_output_details()
        self.inputs = {s.name: s for s in tensor_specs(in_details)}
        self.outputs = {s.name: s for s in tensor_specs(out_details)}
        # The runner only maps signature names to tensor indices; it must not be kept, since a live
        # runner holds a reference that makes `invoke()` refuse to run. Index lookups are also cheaper.
        del runner
        self._in_index = {name: d["index"] for name, d in in_details.items()}
        self._out_index = {name: d["index"] for name, d in out_details.items()}
        self._first_in, self._first_out = next(iter(self._in_index.values())), next(iter(self._out_index.values()))

    @classmethod
    def from_entry(cls, entry: ModelEntry, models_dir: Path | str, *, num_threads: int | None = None,
                   runtime: Runtime | None = None) -> TFLiteModel:
        """Verify hash and tensors against the manifest, then load; errors name file and mismatch."""
        path = verify_file(entry, models_dir)
        model = cls(path, num_threads=num_threads, signature=entry.signature, runtime=runtime)
        model.check_against(entry)
        return model

    def check_against(self, entry: ModelEntry) -> None:
        for kind, declared, actual in (("input", entry.inputs, self.inputs), ("output", entry.outputs, self.outputs)):
            names = {t.name for t in declared}
            if names != set(actual):
                raise ManifestError(
                    f"{self.path}: {kind} tensors {sorted(actual)} do not match the manifest's {sorted(names)}")
            for spec in declared:
                got = actual[spec.name]
                if got.shape != spec.shape or got.dtype != spec.dtype:
                    raise ManifestError(
                        f"{self.path}: {kind} {spec.name!r} is {got.dtype}{list(got.shape)}, "
                        f"manifest says {spec.dtype}{list(spec.shape)}")
                if not np.isclose(got.scale, spec.scale, rtol=1e-6) or got.zero_point != spec.zero_point:
                    raise ManifestError(
                        f"{self.path}: {kind} {spec.name!r} quantization ({got.scale}, {got.zero_point}) "
                        f"differs from the manifest's ({spec.scale}, {spec.zero_point})")

    def run_raw(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Invoke with tensors already in the model's dtypes; returns copies of all outputs."""
        for name, value in feeds.items():
            self.interpreter.set_tensor(self._in_index[name], value)
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(i).copy() for name, i in self._out_index.items()}

    def run_one_raw(self, value: np.ndarray) -> np.ndarray:
        """The first input in, a copy of the first output out, no dicts: a camera's per-frame path."""
        self.interpreter.set_tensor(self._first_in, value)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._first_out).copy()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Invoke with float inputs; quantizes in and dequantizes out as each tensor says."""
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise ValueError(f"{self.path}: missing inputs {sorted(missing)}")
        raw = {}
        for name, value in feeds.items():
            spec = self.inputs[name]
            value = np.asarray(value, dtype=np.float32).reshape(spec.shape)
            raw[name] = quantize(value, spec)
        out = self.run_raw(raw)
        return {name: dequantize(v, self.outputs[name]) for name, v in out.items()}
