"""Shared fixtures. Everything is real: files on disk, the TFLite interpreter, (later) mosquitto."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tools.system_packages import PACKAGES, missing, skip_reason

ROOT = Path(__file__).resolve().parents[1]
# the committed models; EDGEPIPE_TEST_MODELS points the suite at another export (e.g. a quick one)
MODELS_DIR = Path(os.environ.get("EDGEPIPE_TEST_MODELS", ROOT / "models"))
SAMPLE_FRAMES = ROOT / "data" / "sample-frames.npz"  # 300 labelled Fashion-MNIST test frames, shipped


# --- system packages: a test that needs one it cannot find skips, naming the package ----------------------
def requires_package(*names: str) -> pytest.MarkDecorator:
    """Mark a test (or a module, as `pytestmark`) as needing these Debian packages (tools/system_packages.py)."""
    unknown = set(names) - set(PACKAGES)
    if unknown:
        raise ValueError(f"unknown system package(s) {sorted(unknown)}; known: {sorted(PACKAGES)}")
    return pytest.mark.requires_package(*names)


def requires_dataset(spec: str) -> pytest.MarkDecorator:
    """The whole image data set a model entry names: Debian's package for the default Fashion-MNIST;
    a folder given in the spec (`fashion_mnist:DIR`), or another data set, needs no package."""
    return requires_package("dataset-fashion-mnist") if spec == "fashion_mnist" else requires_package()


def skip_without(*names: str) -> None:
    """Skip the running test (or fixture) if a package is missing -- or fail, where the run must be
    complete (`.ci/run` sets EDGEPIPE_REQUIRE_SYSTEM_PACKAGES=1: a CI run that skipped them proves nothing)."""
    lacking = missing(list(names))
    if not lacking:
        return
    if os.environ.get("EDGEPIPE_REQUIRE_SYSTEM_PACKAGES") == "1":
        pytest.fail(skip_reason(lacking) + " and EDGEPIPE_REQUIRE_SYSTEM_PACKAGES=1", pytrace=False)
    pytest.skip(skip_reason(lacking))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A skip mark on each test that needs a missing package, so the summary names test and package;
    tests using a broker fixture need its package without saying so."""
    for item in items:
        if "broker" in item.fixturenames or "bridged_pair" in item.fixturenames:
            item.add_marker(requires_package("mosquitto"))
        if "nats_cluster" in item.fixturenames:
            item.add_marker(requires_package("nats-server"))
        names = dict.fromkeys(n for mark in item.iter_markers("requires_package") for n in mark.args)
        lacking = missing(list(names))
        if lacking and os.environ.get("EDGEPIPE_REQUIRE_SYSTEM_PACKAGES") != "1":
            item.add_marker(pytest.mark.skip(reason=skip_reason(lacking)))


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires_package"):  # reached with a package missing only when required
        skip_without(*mark.args)


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
    """A mosquitto of the test's own on a free loopback port (see tests/helpers/mqtt.py); skips without one."""
    from tests.helpers.mqtt import Broker

    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path):
    """Three nats-server nodes of the test's own (JetStream R3, MQTT on each, deploy/nats/cluster.conf on free
    loopback ports): `.mqtt_ports`, `.addresses()`, `.kill(i)`, `.restart(i)`; skips without nats-server."""
    from tests.helpers.mqtt import Cluster

    cluster = Cluster(tmp_path / "nats").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def bridged_pair(tmp_path: Path):
    """A Pi-local mosquitto bridged to a central one by deploy/mosquitto/bridge.conf (anonymous, loopback):
    `.local`, `.central` (each stoppable, killable, restartable), `.device`."""
    from tests.helpers.mqtt import Bridged

    pair = Bridged(tmp_path / "bridged").start()
    yield pair
    pair.stop()


@pytest.fixture(autouse=True)
def _no_stray_agents():
    """A failed assertion must not leave an agent process running into the next test."""
    yield
    import sys

    helpers = sys.modules.get("tests.helpers.mqtt")
    if helpers is not None:
        helpers.AgentProcess.kill_all()
