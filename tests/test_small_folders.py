"""Image folders: the edge's resize at training time (bit-exact), refused exports leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from edge.models.classifier import frame_to_input
from edge.models.manifest import read_manifest
from training.cli import main
from training.datasets.images import load_image_folder
from training.export import ExportError, ExportRequest, export_both
from training.quality.evaluation import images_to_input
from training.tasks.cnn import CNNConfig, recipe, refusal

PRE = {"height": 28, "width": 28, "channels": 1, "invert": False, "pixel_offset": 0.0, "pixel_scale": 255.0}


def test_training_sees_what_the_edge_feeds_bit_for_bit(tmp_path: Path) -> None:
    """Odd sizes, gray, RGB, RGBA and palette files: every training input equals the edge's input for its file."""
    rng = np.random.default_rng(0)
    edge_inputs = set()
    for i, (mode, size) in enumerate([("RGB", (37, 50)), ("L", (28, 28)), ("RGBA", (64, 64)), ("P", (90, 61)),
                                      ("RGB", (8, 8)), ("L", (100, 31))]):
        pixels = rng.integers(0, 256, size=(*size, 4 if mode == "RGBA" else 3), dtype=np.uint8)
        image = Image.fromarray(pixels if mode == "RGBA" else pixels[..., :3]).convert(mode)
        path = tmp_path / f"class{i % 2}" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        image.save(path)
        with Image.open(path) as img:  # what the agent's folder camera decodes
            edge_inputs.add(frame_to_input(np.asarray(img.convert("RGB")), PRE).tobytes())
    data = load_image_folder(tmp_path)
    training = {x.tobytes() for x in images_to_input(np.concatenate([data.x_train, data.x_test]), PRE)[:, None]}
    assert training == edge_inputs


def test_refusal_rules() -> None:
    cfg = CNNConfig()
    # the digits run: 17% held out, Keras 97% -- near chance
    assert "near chance" in refusal(0.17, 359, 0.117, 0.97, 144, cfg, "cnn.tflite")
    # well above chance, far below validation
    assert "below the best Keras validation accuracy" in refusal(0.60, 359, 0.117, 0.97, 144, cfg, "cnn.tflite")
    assert refusal(0.95, 359, 0.117, 0.97, 144, cfg, "cnn.tflite") is None
    # 12 held-out images cannot tell 70% from a lucky guess among 3 classes
    assert "near chance" in refusal(0.70, 12, 0.34, 0.70, 6, cfg, "cnn.tflite")


def test_recipe_scales_with_the_data() -> None:
    cfg = CNNConfig()
    big, small = recipe(cfg, 54000), recipe(cfg, 1294)
    assert (big.small, big.batch_size, big.epochs) == (False, 128, 12)  # the committed model's recipe
    assert small.small and small.batch_size == 32 and small.epochs * small.steps_per_epoch >= cfg.min_steps
    assert recipe(CNNConfig(epochs=3), 1294).epochs == 3


def tiny_request(model: keras.Model) -> ExportRequest:
    x = np.random.default_rng(0).random((16, 4)).astype(np.float32)
    return ExportRequest(name="tiny", task="classify", model=model, inputs={"image": (1, 4)},
                         outputs=["probabilities"], representative=lambda: ({"image": r[None]} for r in x),
                         preprocess={}, postprocess={}, dataset="random", parity_tolerance={"probabilities": 0.5})


def test_a_refused_export_leaves_no_file_and_keeps_the_old_ones(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,), name="image"), keras.layers.Dense(3, activation="softmax")])
    request = tiny_request(model)
    (tmp_path / "tiny.tflite").write_bytes(b"the previous export")

    def refuse(entries: list) -> None:
        assert (tmp_path / "tiny.tflite").read_bytes() == b"the previous export"  # not touched before acceptance
        raise ExportError("refused")

    held_out = lambda: ({"image": r[None]} for r in np.eye(4, dtype=np.float32))  # noqa: E731
    with pytest.raises(ExportError, match="refused"):
        export_both(request, tmp_path, held_out, lambda tfl: {}, {}, accept=refuse)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.tflite"]  # no twin, no staging folder
    entries = export_both(request, tmp_path, held_out, lambda tfl: {}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.tflite", "tiny_float32.tflite"]
    assert all((tmp_path / e.file).stat().st_mode & 0o777 == 0o644 for e in entries)


@pytest.mark.slow
def test_small_folder_with_random_labels_is_refused(tmp_path: Path, caplog) -> None:
    """90 real digits under random labels: Keras fits them, held-out accuracy is chance: exit 2, no files."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = np.random.default_rng(1).integers(0, 3, 90)
    for i, (image, label) in enumerate(zip(digits.images[:90], labels)):
        path = tmp_path / "folder" / f"class{label}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.uint8(image * 15)).save(path)
    out = tmp_path / "models"
    out.mkdir()
    assert main(["cnn", "--dataset", f"folder:{tmp_path / 'folder'}", "--epochs", "6", "--out", str(out),
                 "--report", str(tmp_path / "report")]) == 2
    assert "is near chance" in caplog.text and "check the labels" in caplog.text
    assert list(out.iterdir()) == []  # no .tflite, no staging folder, no manifest
    if (out / "manifest.json").exists():
        assert "cnn" not in read_manifest(out / "manifest.json").models


def test_flips_are_only_used_when_asked_for() -> None:
    """A mirrored digit is another class: no flip by default; `--flip` (camera crops of a scene) adds one."""
    from training.tasks.cnn import augmenter
    from training.tasks.registry import get_config

    assert not any(isinstance(layer, keras.layers.RandomFlip) for layer in augmenter(1).layers)
    assert any(isinstance(layer, keras.layers.RandomFlip) for layer in augmenter(1, flip=True).layers)
    assert get_config("default", "cnn").flip is False and get_config("default", "cnn", flip=True).flip is True
    with pytest.raises(SystemExit, match="--flip applies to the cnn"):
        main(["lstm", "--flip", "--out", "/nonexistent"])


def test_a_model_trained_elsewhere_keeps_its_pictures_beside_it(tmp_path: Path) -> None:
    """`--out models-door` must not overwrite the committed models' pictures in reports/training."""
    import argparse

    from training.cli import report_dir
    from training.paths import MODELS_DIR, REPORT_DIR

    assert report_dir(argparse.Namespace(report=None, out=tmp_path / "m")) == tmp_path / "m" / "reports"
    assert report_dir(argparse.Namespace(report=None, out=MODELS_DIR)) == REPORT_DIR
    assert report_dir(argparse.Namespace(report=tmp_path / "r", out=MODELS_DIR)) == tmp_path / "r"
