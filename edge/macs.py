"""Multiply-accumulates per invoke, counted from a `.tflite` graph (convolutions and dense layers).

What dominates a small model's cost on a Pi; the benchmark relates it to the measured time.
Element-wise ops (activations, adds, pooling) are not counted: they are a rounding error here.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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
