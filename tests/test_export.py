"""Export of small models: op list, parity, tensors read back from the file, dict-keyed calibration."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from edge.models.manifest import ManifestError
from edge.models.runtime import TFLiteModel
from training.export import ExportError, ExportRequest, export_both, export_variant
from training.tflite import check_ops, run_batch


def tiny_classifier() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dropout(0.1),
                              keras.layers.Dense(3, activation="softmax")])
    return model


def classifier_request(model: keras.Model, **kw) -> ExportRequest:
    rng = np.random.default_rng(0)
    calib = rng.random((64, 1, 8, 8, 1)).astype(np.float32)
    return ExportRequest(
        name="tiny", task="classify", model=model, inputs={"image": (1, 8, 8, 1)}, outputs=["probabilities"],
        representative=lambda: ({"image": x} for x in calib),
        preprocess={"height": 8, "width": 8, "channels": 1, "invert": False, "pixel_offset": 0, "pixel_scale": 255},
        postprocess={"labels": ["a", "b", "c"]}, dataset="random", **kw)


def held_out():
    rng = np.random.default_rng(1)
    return ({"image": rng.random((1, 8, 8, 1)).astype(np.float32)} for _ in range(32))


def test_export_writes_verified_int8_and_float_twin(tmp_path: Path) -> None:
    model = tiny_classifier()
    entries = export_both(classifier_request(model), tmp_path, held_out, lambda tfl: {"n": 1}, {"k": 2})
    int8, f32 = entries
    assert (int8.name, int8.variant, f32.name, f32.variant) == ("tiny", "int8", "tiny_float32", "float32")
    assert int8.inputs[0].dtype == "int8" and int8.inputs[0].quantized
    assert int8.outputs[0].dtype == "int8" and f32.inputs[0].dtype == "float32"
    assert int8.size_bytes < f32.size_bytes
    assert "WHILE" not in int8.export["ops"] and not any(o.startswith("Flex") for o in int8.export["ops"])
    assert int8.export["parity"]["probabilities_mean_abs_diff"] < 0.02
    assert f32.export["parity"]["probabilities_mean_abs_diff"] < 1e-5
    # what the entry says is what the file holds
    for entry in entries:
        TFLiteModel.from_entry(entry, tmp_path)


def test_int8_file_agrees_with_keras_on_classes(tmp_path: Path) -> None:
    model = tiny_classifier()
    int8 = export_both(classifier_request(model), tmp_path, held_out, lambda tfl: {}, {})[0]
    tfl = TFLiteModel(tmp_path / int8.file)
    x = np.random.default_rng(5).random((50, 8, 8, 1)).astype(np.float32)
    keras_cls = np.argmax(model.predict(x, verbose=0), axis=1)
    tfl_cls = np.argmax(run_batch(tfl, "image", x)["probabilities"], axis=1)
    assert np.mean(keras_cls == tfl_cls) >= 0.9


def test_parity_failure_is_an_error_naming_the_output(tmp_path: Path) -> None:
    request = classifier_request(tiny_classifier(), parity_tolerance={"probabilities": 1e-9})
    with pytest.raises(ExportError, match=r"tiny\.tflite: output 'probabilities' differs from Keras"):
        export_variant(request, "int8", tmp_path, held_out, lambda tfl: {}, {})


def test_forbidden_ops_are_refused() -> None:
    check_ops(["FULLY_CONNECTED", "TANH"], "ok.tflite")
    with pytest.raises(ManifestError, match=r"m\.tflite: forbidden ops \['FlexAddV2', 'WHILE'\]"):
        check_ops(["WHILE", "FlexAddV2", "ADD"], "m.tflite")


def test_multi_input_model_is_calibrated_by_name(tmp_path: Path) -> None:
    """Inputs of very different ranges: a list-fed calibration would swap them and wreck accuracy."""
    a = keras.Input((4,), batch_size=1, name="big")
    b = keras.Input((2,), batch_size=1, name="small")
    out = keras.layers.Concatenate()([a * 0.01, b * 10.0])
    model = keras.Model({"big": a, "small": b}, {"sum": keras.ops.sum(out, axis=-1)})
    rng = np.random.default_rng(0)
    feeds = [{"small": rng.uniform(-0.1, 0.1, (1, 2)).astype(np.float32),
              "big": rng.uniform(-100, 100, (1, 4)).astype(np.float32)} for _ in range(64)]
    request = ExportRequest(
        name="two", task="forecast", model=model, inputs={"small": (1, 2), "big": (1, 4)}, outputs=["sum"],
        representative=lambda: iter(feeds), preprocess={"look_back": 1, "offset": 0, "scale": 1},
        postprocess={"offset": 0, "scale": 1, "state": {}}, dataset="random")
    entry = export_variant(request, "int8", tmp_path, lambda: iter(feeds[:16]), lambda tfl: {}, {})
    assert entry.input("big").scale > 0.5 and entry.input("small").scale < 0.01


def test_compact_cnn_exports_with_batch_norm_folded(tmp_path: Path) -> None:
    from training.models.cnn import build_compact_cnn

    keras.utils.set_random_seed(0)
    model = build_compact_cnn((28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.random((256, 28, 28, 1)).astype(np.float32)
    model.fit(images, rng.integers(0, 10, 256), epochs=1, verbose=0)  # moving statistics that are not 0/1
    request = ExportRequest(
        name="compact", task="classify", model=model, inputs={"image": (1, 28, 28, 1)}, outputs=["probabilities"],
        representative=lambda: ({"image": x[None]} for x in images[:64]),
        preprocess={"height": 28, "width": 28, "channels": 1, "invert": False, "pixel_offset": 0, "pixel_scale": 255},
        postprocess={"labels": [str(i) for i in range(10)]}, dataset="random",
        parity_tolerance={"probabilities": 0.2})  # an untrained net: near-uniform outputs, a tiny range
    entry = export_variant(request, "int8", tmp_path, lambda: ({"image": x[None]} for x in images[64:96]),
                           lambda tfl: {}, {})
    assert "CONV_2D" in entry.export["ops"] and not any("BATCH_NORM" in op or op == "MUL" for op in entry.export["ops"])
    assert entry.size_bytes < 1_000_000
