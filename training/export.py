"""Export a trained Keras model to TFLite (full-integer int8 + a float32 twin) and verify it.

Why it is done this way (each point was a silent failure once, see docs/DESIGN.md):
- The graph is traced with a named input signature and its variables frozen to constants,
  then re-wrapped so the `.tflite` keeps a `serving_default` signature with *our* tensor
  names. Keras 3 layers carry seed-generator variables that otherwise survive as
  READ_VARIABLE ops and break int8 calibration.
- The representative dataset yields dicts keyed by input name: a list is fed in the
  graph's input order, not ours, and mis-calibrates multi-input models without a warning.
- Int8 models are full-integer (int8 inputs and outputs): no dynamic-range models, which
  do not load on tflite-runtime 2.14.
- Every file is verified in the same run: op list (no Flex, no WHILE), tensors read back
  from the file, Keras-vs-TFLite parity within a stated tolerance.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from edge.models import golden
from edge.models.manifest import Manifest, ModelEntry, now_iso, sha256_file
from edge.models.runtime import TFLiteModel
from training.tflite import check_ops, op_names

log = logging.getLogger(__name__)

Feeds = dict[str, np.ndarray]
QUANTIZED = {
    "int8": (tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.int8),
    "int16x8": (tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.int16),
}


class ExportError(RuntimeError):
    """An exported file failed verification (ops, parity); the message says which check and by how much."""


@dataclass
class ExportRequest:
    """What to export: the model, its named signature and how to calibrate it."""

    name: str
    task: str
    model: Callable[..., Any]
    inputs: dict[str, tuple[int, ...]]
    outputs: list[str]
    representative: Callable[[], Iterable[Feeds]]
    preprocess: dict[str, Any]
    postprocess: dict[str, Any]
    dataset: str
    training: dict[str, Any] = field(default_factory=dict)
    #: the quantized variant the edge runs: "int8" or "int16x8"
    quantization: str = "int8"
    #: max mean |keras - tflite| per output as a fraction of that output's range on the held-out
    #: data, for the int8 file (default 2%); the float32 twin must agree to 1e-4 of the range
    parity_tolerance: dict[str, float] = field(default_factory=dict)
    #: per output, the smallest range the parity bound is relative to: the output's span on the data the model
    #: was trained on. Without it a smooth stream, whose held-out slice spans a sliver of the training range,
    #: shrinks the bound below the file's quantization step and the export is refused (issue 27)
    parity_range_floor: dict[str, float] = field(default_factory=dict)


def serving_function(request: ExportRequest) -> tf.types.experimental.ConcreteFunction:
    """A concrete function with named inputs/outputs and no variables left in it."""
    names = list(request.inputs)
    specs = [tf.TensorSpec(shape, tf.float32, name=n) for n, shape in request.inputs.items()]

    def call(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        feed = dict(zip(names, args)) if len(names) > 1 else args[0]
        out = request.model(feed, training=False)
        if not isinstance(out, dict):
            out = {request.outputs[0]: out}
        return {k: out[k] for k in request.outputs}

    frozen = convert_variables_to_constants_v2(tf.function(call, input_signature=specs).get_concrete_function())
    order = sorted(request.outputs)  # tf.nest flattens dicts in sorted key order

    def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(zip(order, frozen(*args)))

    return tf.function(serve, input_signature=specs).get_concrete_function()


def convert(request: ExportRequest, variant: str) -> bytes:
    """`variant`: "int8" (full-integer, int8 in/out), "int16x8" (int8 weights, int16 activations
    and in/out: for recurrent state that int8 rounds too coarsely) or "float32"."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serving_function(request)], tf.Module())
    if variant in QUANTIZED:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({k: np.asarray(v, np.float32) for k, v in feeds.items()}
                                                    for feeds in request.representative())
        ops, io_type = QUANTIZED[variant]
        converter.target_spec.supported_ops = [ops]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    elif variant != "float32":
        raise ValueError(f"unknown variant {variant!r}")
    return converter.convert()


def keras_outputs(request: ExportRequest, feeds: Feeds) -> dict[str, np.ndarray]:
    names = list(request.inputs)
    feed = {k: tf.constant(v, tf.float32) for k, v in feeds.items()} if len(names) > 1 else \
        tf.constant(feeds[names[0]], tf.float32)
    out = request.model(feed, training=False)
    if not isinstance(out, dict):
        out = {request.outputs[0]: out}
    return {k: np.asarray(out[k]) for k in request.outputs}


def parity(request: ExportRequest, model: TFLiteModel, held_out: Iterable[Feeds]) -> dict[str, float]:
    """Mean and max |Keras - TFLite| per output over held-out inputs (one invoke each)."""
    diffs: dict[str, list[np.ndarray]] = {k: [] for k in request.outputs}
    refs: dict[str, list[np.ndarray]] = {k: [] for k in request.outputs}
    for feeds in held_out:
        ref = keras_outputs(request, feeds)
        got = model.run(feeds)
        for k in request.outputs:
            diffs[k].append(np.abs(ref[k] - got[k]).ravel())
            refs[k].append(ref[k].ravel())
    report = {}
    for k, parts in diffs.items():
        flat, ref = np.concatenate(parts), np.concatenate(refs[k])
        report[f"{k}_mean_abs_diff"] = float(flat.mean())
        report[f"{k}_max_abs_diff"] = float(flat.max())
        report[f"{k}_range"] = float(ref.max() - ref.min())
    return report


def check_parity(request: ExportRequest, variant: str, report: dict[str, float], path: Path) -> None:
    """Mean |Keras - TFLite| within a fraction of the output's range: its held-out range, floored by the
    request's `parity_range_floor` (a held-out slice of a smooth stream spans too little to measure against)."""
    for k, fraction in tolerance(request, variant).items():
        span = max(report[f"{k}_range"], request.parity_range_floor.get(k, 0.0), 1e-6)
        report[f"{k}_parity_range"] = span
        got = report[f"{k}_mean_abs_diff"]
        if got > fraction * span:
            raise ExportError(f"{path}: output {k!r} differs from Keras by {got:.4g} on average, more than "
                              f"{fraction:.2%} of its range {span:.4g} ({variant})")


def tolerance(request: ExportRequest, variant: str) -> dict[str, float]:
    """Allowed mean |diff| per output as a fraction of its range."""
    return {k: (request.parity_tolerance.get(k, 0.02) if variant in QUANTIZED else 1e-4) for k in request.outputs}


def export_variant(request: ExportRequest, variant: str, out_dir: Path, held_out: Callable[[], Iterator[Feeds]],
                   evaluate: Callable[[TFLiteModel], dict[str, Any]], keras_metrics: dict[str, Any]) -> ModelEntry:
    """Convert, write, verify (ops, parity), measure the task metric on the file, describe it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_float32" if variant == "float32" else ""
    path = out_dir / f"{request.name}{suffix}.tflite"
    path.write_bytes(convert(request, variant))
    model = TFLiteModel(path)
    check_ops(op_names(model), str(path))
    report = parity(request, model, held_out())
    check_parity(request, variant, report, path)
    metrics = evaluate(model)
    log.info("%s: %s, parity %s, metrics %s", path.name, variant, report, metrics)
    entry = ModelEntry(
        name=request.name + suffix,
        task=request.task,
        file=path.name,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        created=now_iso(),
        dataset=request.dataset,
        variant=variant,
        signature=model.signature,
        inputs=[model.inputs[n] for n in request.inputs],
        outputs=[model.outputs[n] for n in request.outputs],
        preprocess=request.preprocess,
        postprocess=request.postprocess,
        metrics=metrics,
        keras_metrics=keras_metrics,
        training=request.training,
        export={"ops": sorted(set(op_names(model))), "parity": report,
                "parity_tolerance_fraction_of_range": tolerance(request, variant),
                "runtime": f"{model.runtime.name} {model.runtime.version}"},
    )
    entry.golden = golden.make(model, entry)
    return entry


def add_golden(manifest: Manifest, models_dir: Path) -> list[str]:
    """Golden vectors for every entry of an existing export, from its committed files (no retraining).

    Each file is verified against its entry first, so the vectors describe the file the manifest names.
    """
    done = []
    for entry in manifest.models.values():
        entry.golden = golden.make(TFLiteModel.from_entry(entry, models_dir), entry)
        done.append(entry.name)
    return done


def export_both(request: ExportRequest, out_dir: Path, held_out: Callable[[], Iterator[Feeds]],
                evaluate: Callable[[TFLiteModel], dict[str, Any]], keras_metrics: dict[str, Any],
                accept: Callable[[list[ModelEntry]], None] | None = None) -> list[ModelEntry]:
    """The quantized model the edge runs and its float32 twin, both verified.

    Both files are written to a staging folder inside `out_dir` and moved into place (mode 0644)
    only when every check has passed, `accept(entries)` included (a task's own gate, raising
    ExportError): a refused export leaves no file behind and the files already there untouched.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".export-{request.name}-"))
    try:
        entries = [export_variant(request, v, staging, held_out, evaluate, keras_metrics)
                   for v in (request.quantization, "float32")]
        if accept is not None:
            accept(entries)
        for entry in entries:
            (staging / entry.file).chmod(0o644)
            os.replace(staging / entry.file, out_dir / entry.file)
        return entries
    finally:
        shutil.rmtree(staging, ignore_errors=True)
