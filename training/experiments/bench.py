"""`python -m training bench` (`make bench`): the committed int8 files against what a user would run instead.

Same input, same process: Keras `model.predict` on one frame, a direct `model(x)` call, the
float32 and int8 `.tflite` files through edgepipe's runtime (quantize, invoke, dequantize), and,
where `make venv-tflite` built it, `tflite-runtime` 2.14 (numpy<2) in its own interpreter. The Keras
models are rebuilt from the manifest's architecture with fresh weights: the time of a forward pass
does not depend on the weights' values. Appends a markdown table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from training.argtypes import cannot_write, whole
from training.models.cnn import ARCHITECTURES
from training.paths import MODELS_DIR, PROJECT_ROOT

TFLITE_214 = PROJECT_ROOT / ".venv-tflite214" / "bin" / "python"


def median_ms(call, repeats: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return float(np.median(samples))


def tflite_214_ms(path: Path, repeats: int) -> float | None:
    if not TFLITE_214.exists():
        return None
    snippet = f"""
import time, numpy as np
from tflite_runtime.interpreter import Interpreter
it = Interpreter(model_path={str(path)!r}, num_threads=1); it.allocate_tensors()
d = it.get_input_details()[0]; it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
for _ in range(100): it.invoke()
s = []
for _ in range({repeats}):
    t = time.perf_counter(); it.invoke(); s.append((time.perf_counter() - t) * 1000)
print(float(np.median(s)))
"""
    out = subprocess.run([str(TFLITE_214), "-c", snippet], capture_output=True, text=True)
    return float(out.stdout.strip()) if out.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="the export folder measured")
    parser.add_argument("--repeats", type=whole(1, 1_000_000), default=1000,
                        help="calls timed per path, at most 1,000,000 (the median is kept)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "benchmarks.md",
                        help="the markdown file the table is appended to (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if args.out.is_dir() or not args.out.parent.is_dir():  # said before minutes of timing, not after
        parser.error(f"--out {args.out}: expected a file in an existing folder")
    if problem := cannot_write(args.out.parent):
        parser.error(f"--out {args.out}: {problem}")
    manifest = read_manifest(args.models_dir / "manifest.json")
    entry = manifest.get("cnn")
    keras_model = ARCHITECTURES[entry.training.get("arch", "lecture")]((28, 28, 1), len(entry.postprocess["labels"]))
    frame = np.random.default_rng(0).random((1, 28, 28, 1)).astype(np.float32)
    int8 = TFLiteModel.from_entry(entry, args.models_dir, num_threads=1)
    f32 = TFLiteModel.from_entry(manifest.get("cnn_float32"), args.models_dir, num_threads=1)
    few = max(50, args.repeats // 10)  # predict() is slow: fewer repeats give the same median
    times = {
        "Keras `model.predict(x)`": median_ms(lambda: keras_model.predict(frame, verbose=0), few),
        "Keras `model(x)`": median_ms(lambda: keras_model(frame, training=False), few),
        "float32 .tflite, edgepipe runtime": median_ms(lambda: f32.run({"image": frame}), args.repeats),
        "int8 .tflite, edgepipe runtime": median_ms(lambda: int8.run({"image": frame}), args.repeats),
    }
    old = tflite_214_ms(args.models_dir / entry.file, args.repeats)
    base = times["int8 .tflite, edgepipe runtime"]
    lines = ["", "## The CNN on one frame, against the alternatives (1 thread, median of repeated calls)", "",
             "| path | ms per frame | int8 edgepipe is faster by |", "| --- | --- | --- |"]
    for name, ms in times.items():
        lines.append(f"| {name} | {ms:.3f} | {ms / base:.1f}x |")
    if old is not None:
        lines.append(f"| int8 .tflite, tflite-runtime 2.14 (invoke only) | {old:.3f} | {old / base:.1f}x |")
    else:
        lines.append("| int8 .tflite, tflite-runtime 2.14 | not installed (`make venv-tflite`) | — |")
    text = "\n".join(lines) + "\n"
    print(text)
    print(json.dumps({k: round(v, 4) for k, v in times.items()}))
    with open(args.out, "a") as fh:
        fh.write(text)
    return 0


if __name__ == "__main__":
    from training.guard import guarded  # the CLI's error handling, run directly too

    sys.exit(guarded(main, sys.argv[1:]))
