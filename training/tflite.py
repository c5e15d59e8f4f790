"""Host-side helpers around the edge's `TFLiteModel`: batches through a batch-1 file, the op list, MACs.

The edge classifies one frame or scores one reading at a time; only evaluation and export
need a batch loop and the op-list check, and only the benchmark counts multiply-accumulates
(convolutions and dense layers: what dominates a small model's cost on a Pi), so they live
here, not in `edge/`. TensorFlow-free: `tools/bench.py` imports it on a Pi too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.models.manifest import ManifestError
from edge.models.runtime import TFLiteModel

FORBIDDEN_OPS = ("WHILE",)  # plus every Flex (SELECT_TF_OPS) op, see check_ops


def run_batch(model: TFLiteModel, name: str, values: np.ndarray, **fixed: np.ndarray) -> dict[str, np.ndarray]:
    """Run a batch of samples through a batch-1 model, one invoke each, stacking outputs."""
    results: dict[str, list[np.ndarray]] = {k: [] for k in model.outputs}
    for value in values:
        out = model.run({name: value[None, ...], **fixed})
        for key, v in out.items():
            results[key].append(v[0])
    return {k: np.stack(v) for k, v in results.items()}


def op_names(model: TFLiteModel | Any) -> list[str]:
    """Every op in the graph, by name (a `TFLiteModel` or a bare interpreter)."""
    interpreter = getattr(model, "interpreter", model)
    return [op["op_name"] for op in interpreter._get_ops_details()]


def check_ops(names: list[str], where: str) -> None:
    """No Flex (SELECT_TF_OPS) and no WHILE: neither runs on a Pi's plain runtime."""
    bad = sorted({n for n in names if n.startswith("Flex") or n in FORBIDDEN_OPS})
    if bad:
        raise ManifestError(f"{where}: forbidden ops {bad} (no Flex/SELECT_TF_OPS, no WHILE loops)")


def count_macs(interpreter: Any) -> int:
    """Sum over CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and BATCH_MATMUL ops of one invoke."""
    shapes = {d["index"]: [int(x) for x in d["shape"]] for d in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        inputs = [shapes.get(i) for i in op["inputs"] if i >= 0]
        outputs = [shapes.get(i) for i in op["outputs"] if i >= 0]
        if not inputs or not outputs or None in inputs[:2] or outputs[0] is None:
            continue
        out = int(np.prod(outputs[0]))
        if name == "CONV_2D":  # weights [out_c, kh, kw, in_c]
            _, kh, kw, in_c = inputs[1]
            total += out * kh * kw * in_c
        elif name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, out_c]
            total += out * inputs[1][1] * inputs[1][2]
        elif name == "FULLY_CONNECTED":  # weights [units, in_features]
            total += out * inputs[1][-1]
        elif name == "BATCH_MATMUL":
            total += out * inputs[0][-1]
    return total

