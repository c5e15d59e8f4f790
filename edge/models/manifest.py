"""The manifest: the one contract between `training/` (writer) and `edge/` (reader).

Everything the agent needs to run a model -- tensor shapes and quantization, input
scaling, labels, threshold, LSTM state layout, the metrics of the exported file --
lives in `models/manifest.json` beside the `.tflite` files, never in code constants.
This module owns the schema, reading, writing and validation, so that both sides
agree by construction. It must stay importable without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from edge.fileio import atomic_write
from edge.numbers import NumberError, loads

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
TASKS = ("classify", "anomaly", "forecast", "generate")
DTYPES = ("int8", "uint8", "int16", "int32", "float32")

#: what each task must carry in `preprocess` / `postprocess` for the edge to run it
REQUIRED_PRE = {
    "classify": ("height", "width", "channels", "invert", "pixel_offset", "pixel_scale"),
    "anomaly": ("features", "offset", "scale", "window"),
    "forecast": ("look_back", "offset", "scale"),
    "generate": ("latent_dim",),
}
REQUIRED_POST = {
    "classify": ("labels",),
    "anomaly": ("threshold", "threshold_method", "score"),
    "forecast": ("offset", "scale", "state"),
    "generate": ("height", "width", "pixel_offset", "pixel_scale"),
}


class ManifestError(ValueError):
    """A manifest or a model file does not match the contract; the message names both."""


def now_iso() -> str:
    """UTC timestamp in ISO 8601, the format of every `ts`/`created` in edgepipe."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a large model does not need to fit twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the interpreter reports it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> TensorSpec:
        _require_keys(data, ("name", "shape", "dtype"), where)
        shape = data["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ManifestError(f"{where}: 'shape' must be a list of positive integers, got {shape!r}")
        if data["dtype"] not in DTYPES:
            raise ManifestError(f"{where}: 'dtype' must be one of {DTYPES}, got {data['dtype']!r}")
        scale = data.get("scale", 0.0)
        zero_point = data.get("zero_point", 0)
        if not isinstance(scale, (int, float)) or scale < 0:
            raise ManifestError(f"{where}: 'scale' must be a number >= 0, got {scale!r}")
        if not isinstance(zero_point, int):
            raise ManifestError(f"{where}: 'zero_point' must be an integer, got {zero_point!r}")
        return cls(str(data["name"]), tuple(shape), data["dtype"], float(scale), zero_point)


@dataclass
class ModelEntry:
    """One runnable `.tflite` file and everything needed to feed it and read it."""

    name: str
    task: str
    file: str
    sha256: str
    size_bytes: int
    created: str
    dataset: str
    variant: str  # "int8" or "float32"
    signature: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocess: dict[str, Any]
    postprocess: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    keras_metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    #: fixed inputs and the file's exact raw outputs, re-run at load (edge/models/golden.py); {} for older exports
    golden: dict[str, Any] = field(default_factory=dict)

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, f"model {self.name!r} input")

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, f"model {self.name!r} output")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["inputs"] = [t.to_json() for t in self.inputs]
        data["outputs"] = [t.to_json() for t in self.outputs]
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> ModelEntry:
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        _require_keys(data, required, where)
        if data["task"] not in TASKS:
            raise ManifestError(f"{where}: 'task' must be one of {TASKS}, got {data['task']!r}")
        for key in ("preprocess", "postprocess"):
            if not isinstance(data[key], dict):
                raise ManifestError(f"{where}: {key!r} must be an object")
        _require_keys(data["preprocess"], REQUIRED_PRE[data["task"]], f"{where}.preprocess")
        _require_keys(data["postprocess"], REQUIRED_POST[data["task"]], f"{where}.postprocess")
        for key in ("inputs", "outputs"):
            if not isinstance(data[key], list) or not data[key]:
                raise ManifestError(f"{where}: {key!r} must be a non-empty list of tensors")
        check_file_name(data["file"], where)
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["inputs"] = [TensorSpec.from_json(t, f"{where}.inputs[{i}]")
                            for i, t in enumerate(data["inputs"])]
        kwargs["outputs"] = [TensorSpec.from_json(t, f"{where}.outputs[{i}]")
                             for i, t in enumerate(data["outputs"])]
        return cls(**kwargs)


@dataclass
class Manifest:
    """All models of one export directory, keyed by model name."""

    models: dict[str, ModelEntry] = field(default_factory=dict)
    version: int = MANIFEST_VERSION
    created: str = field(default_factory=now_iso)

    def get(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise ManifestError(
                f"no model named {name!r} in the manifest (has: {', '.join(sorted(self.models)) or 'none'})"
            ) from None

    def upsert(self, entry: ModelEntry) -> None:
        self.models[entry.name] = entry

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created": self.created,
            "models": {name: e.to_json() for name, e in sorted(self.models.items())},
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "manifest") -> Manifest:
        _require_keys(data, ("version", "models"), where)
        if data["version"] != MANIFEST_VERSION:
            raise ManifestError(
                f"{where}: version {data['version']!r} is not supported (this edgepipe reads {MANIFEST_VERSION})"
            )
        if not isinstance(data["models"], dict):
            raise ManifestError(f"{where}: 'models' must be an object keyed by model name")
        models = {}
        for name, entry in data["models"].items():
            models[name] = ModelEntry.from_json(entry, f"{where}: model {name!r}")
            if models[name].name != name:
                raise ManifestError(f"{where}: model key {name!r} and its 'name' {models[name].name!r} differ")
        return cls(models=models, version=data["version"], created=data.get("created", now_iso()))


def read_manifest(path: Path | str) -> Manifest:
    """Read and validate a manifest; every error names the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found (train and export with `make models`)") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from None
    try:
        data = loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except NumberError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    return Manifest.from_json(data, where=str(path))


def write_manifest(manifest: Manifest, path: Path | str) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a manifest; mode 0644 for the service user."""
    atomic_write(path, json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n", mode=0o644)


def check_file_name(name: Any, where: str) -> PurePosixPath:
    """A manifest `file` as a relative path that stays in the models folder, or ManifestError.

    Why: a manifest is data that travels (copied folders, `cmd/reload` after an edit), and the
    agent hashes the file it names and reports the mismatch. A `file` of `../../etc/shadow` or
    `/etc/shadow` must be refused by its name alone, before anything is opened.
    """
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise ManifestError(f"{where}: 'file' must be a file name inside the models folder, got {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or "\\" in name or ".." in path.parts:
        raise ManifestError(f"{where}: 'file' {name!r} is outside the models folder "
                            "(absolute paths and '..' are refused)")
    return path


def model_path(entry: ModelEntry, models_dir: Path | str) -> Path:
    """The entry's file, resolved, if it lies inside `models_dir`; ManifestError (naming the entry) if not.

    Checked on the name first, then on the resolved path, so a symlink in the models folder that
    points elsewhere is refused too; nothing outside the folder is opened, hashed or measured.
    """
    where = f"model {entry.name!r}"
    relative = check_file_name(entry.file, where)
    try:
        root = Path(models_dir).resolve()
        path = (root / relative).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ManifestError(f"{where}: 'file' {entry.file!r} cannot be resolved ({exc})") from None
    if not path.is_relative_to(root) or path == root:
        raise ManifestError(f"{where}: 'file' {entry.file!r} resolves outside the models folder "
                            "(a symlink leaving it is refused)")
    return path


def verify_file(entry: ModelEntry, models_dir: Path | str) -> Path:
    """Check the model file exists and its sha256 and size match the manifest."""
    path = model_path(entry, models_dir)
    if not path.is_file():
        raise ManifestError(f"{path}: model file of {entry.name!r} is missing")
    size = path.stat().st_size
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise ManifestError(
            f"{path}: sha256 mismatch for model {entry.name!r}: manifest says {entry.sha256[:12]}..., "
            f"file is {digest[:12]}... ({size} bytes); re-export or restore the file"
        )
    if size != entry.size_bytes:
        raise ManifestError(f"{path}: size {size} bytes, manifest says {entry.size_bytes}")
    return path


def _require_keys(data: Any, keys: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(repr(k) for k in missing)}")


def _by_name(tensors: list[TensorSpec], name: str, what: str) -> TensorSpec:
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    raise ManifestError(f"{what} {name!r} not found (has: {', '.join(t.name for t in tensors)})")
