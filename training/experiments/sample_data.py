"""`python -m training sample-data`: the small real data the demo ships in `data/`.

- `sample-frames.npz`: 300 labelled Fashion-MNIST *test* frames (never trained on), as a replay file.
- `sensor-stream.csv` + `sensor-stream.segments.json`: the lecture's sensor line, fresh draws, with
  "wrong" and "noisy" segments injected at known rows.
- `airline-passengers.csv` is the lecture's series, copied as it is.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from training.datasets.images import load_image_dataset
from training.datasets.sensors import injected_stream
from training.paths import DATA_DIR

SEGMENTS = [("wrong", 200, 240), ("noisy", 450, 490), ("wrong", 700, 760), ("noisy", 880, 920)]
STREAM_LENGTH = 1000
STREAM_SEED = 2026


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m training sample-data", description=__doc__.splitlines()[0]).parse_args(argv)
    data = load_image_dataset("fashion_mnist")
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(data.x_test), 300, replace=False))
    np.savez_compressed(DATA_DIR / "sample-frames.npz", frames=data.x_test[pick], labels=data.y_test[pick],
                        label_names=np.array(data.labels))
    rows, kinds = injected_stream(SEGMENTS, STREAM_LENGTH, STREAM_SEED)
    lines = ["step,x,y,kind"] + [f"{i},{x:.6f},{y:.6f},{k}" for i, ((x, y), k) in enumerate(zip(rows, kinds))]
    (DATA_DIR / "sensor-stream.csv").write_text("\n".join(lines) + "\n")
    segments = [{"kind": k, "start": s, "end": e} for k, s, e in SEGMENTS]
    (DATA_DIR / "sensor-stream.segments.json").write_text(json.dumps(
        {"rows": STREAM_LENGTH, "seed": STREAM_SEED, "columns": ["x", "y"], "segments": segments}, indent=2) + "\n")
    print(f"wrote {DATA_DIR}/sample-frames.npz, sensor-stream.csv, sensor-stream.segments.json")
    return 0


if __name__ == "__main__":
    from training.guard import guarded  # the CLI's error handling, run directly too

    sys.exit(guarded(main, sys.argv[1:]))
