"""The manifest contract: round trip, and every validation error names the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.models.manifest import (
    Manifest,
    ManifestError,
    ModelEntry,
    TensorSpec,
    read_manifest,
    sha256_file,
    verify_file,
    write_manifest,
)

# TF-free: also run inside the emulated Pi images by `make pi-check` (`pytest -m edge`)
pytestmark = pytest.mark.edge


def make_entry(tmp_path: Path, content: bytes = b"model bytes") -> ModelEntry:
    path = tmp_path / "m.tflite"
    path.write_bytes(content)
    return ModelEntry(
        name="m", task="forecast", file="m.tflite", sha256=sha256_file(path), size_bytes=len(content),
        created="2026-01-01T00:00:00+00:00", dataset="airline", variant="int8", signature="serving_default",
        inputs=[TensorSpec("x", (1, 5, 1), "int8", 0.004, -128)],
        outputs=[TensorSpec("y", (1, 1), "int8", 0.002, 3)],
        preprocess={"look_back": 5, "offset": 104.0, "scale": 518.0},
        postprocess={"offset": 104.0, "scale": 518.0, "state": {"inputs": ["h", "c"]}},
        metrics={"test_rmse": 40.0},
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    entry = make_entry(tmp_path)
    write_manifest(Manifest(models={"m": entry}), tmp_path / "manifest.json")
    back = read_manifest(tmp_path / "manifest.json").get("m")
    assert back == entry
    assert back.input("x").quantized and back.output("y").zero_point == 3


def test_verify_file_accepts_the_right_file(tmp_path: Path) -> None:
    entry = make_entry(tmp_path)
    assert verify_file(entry, tmp_path) == tmp_path / "m.tflite"


def test_hash_mismatch_names_file_and_model(tmp_path: Path) -> None:
    entry = make_entry(tmp_path)
    (tmp_path / "m.tflite").write_bytes(b"model bytez")
    with pytest.raises(ManifestError, match=r"m\.tflite: sha256 mismatch for model 'm'"):
        verify_file(entry, tmp_path)


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    entry = make_entry(tmp_path)
    (tmp_path / "m.tflite").unlink()
    with pytest.raises(ManifestError, match=r"m\.tflite: model file of 'm' is missing"):
        verify_file(entry, tmp_path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["models"]["m"].pop("sha256"), r"model 'm': missing field\(s\) 'sha256'"),
        (lambda d: d["models"]["m"]["inputs"][0].update(shape=[1, -5]), r"inputs\[0\]: 'shape' must be a list"),
        (lambda d: d["models"]["m"]["inputs"][0].update(dtype="int4"), r"'dtype' must be one of"),
        (lambda d: d["models"]["m"].update(task="dance"), r"'task' must be one of"),
        (lambda d: d["models"]["m"]["postprocess"].pop("state"), r"postprocess: missing field\(s\) 'state'"),
        (lambda d: d["models"]["m"].update(outputs=[]), r"'outputs' must be a non-empty list"),
        (lambda d: d.update(version=99), r"version 99 is not supported"),
        (lambda d: d["models"]["m"].update(name="other"), r"model key 'm' and its 'name' 'other' differ"),
    ],
)
def test_validation_errors_say_what_is_wrong(tmp_path: Path, mutate, message: str) -> None:
    write_manifest(Manifest(models={"m": make_entry(tmp_path)}), tmp_path / "manifest.json")
    data = json.loads((tmp_path / "manifest.json").read_text())
    mutate(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message) as info:
        read_manifest(tmp_path / "manifest.json")
    assert str(tmp_path / "manifest.json") in str(info.value)


def test_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"version": 1,\n "models": {,}}')
    with pytest.raises(ManifestError, match=r"not valid JSON \(line 2, column"):
        read_manifest(tmp_path / "manifest.json")


def test_missing_manifest_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="make models"):
        read_manifest(tmp_path / "nope.json")


def test_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    manifest = Manifest(models={"m": make_entry(tmp_path)})
    with pytest.raises(ManifestError, match=r"no model named 'cnn' in the manifest \(has: m\)"):
        manifest.get("cnn")


def test_written_manifest_is_readable_by_everyone(tmp_path: Path) -> None:
    """0644 whatever the umask of the trainer: the service user reads the installer's copy."""
    import os

    old = os.umask(0o077)
    try:
        write_manifest(Manifest(), tmp_path / "manifest.json")
    finally:
        os.umask(old)
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o644


def test_a_metric_that_is_not_finite_is_written_as_null_and_the_manifest_stays_readable(tmp_path: Path) -> None:
    """A MAPE over a series with zeros is inf/NaN; readers refuse non-finite numbers (edge.numbers), so the
    writer must not produce them (a CI run found an export its own reader refused)."""
    entry = make_entry(tmp_path)
    entry.metrics.update({"mape_last36": float("inf"), "nan_metric": float("nan")})
    write_manifest(Manifest(models={"m": entry}), tmp_path / "manifest.json")
    back = read_manifest(tmp_path / "manifest.json").get("m")
    assert back.metrics == {"test_rmse": 40.0, "mape_last36": None, "nan_metric": None}
