"""Shared fixtures. Everything is real: files on disk, the TFLite interpreter, (later) mosquitto."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# the committed models; EDGEPIPE_TEST_MODELS points the suite at another export (e.g. a quick one)
MODELS_DIR = Path(os.environ.get("EDGEPIPE_TEST_MODELS", ROOT / "models"))


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write an IDX file of uint8 data the way MNIST's are laid out."""
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    """A miniature MNIST-style folder: 20 train and 10 test images of 28x28, labels 0-9."""
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (20, 28, 28)), gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(20) % 10, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10))
    return tmp_path


@pytest.fixture
def broker(tmp_path: Path):
    """A mosquitto of the test's own on a free loopback port (see tests/mqtt_helpers.py)."""
    from tests.mqtt_helpers import Broker

    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _no_stray_agents():
    """A failed assertion must not leave an agent process running into the next test."""
    yield
    import sys

    helpers = sys.modules.get("tests.mqtt_helpers")
    if helpers is not None:
        helpers.AgentProcess.kill_all()
