"""`make test`'s set-up step (tools/system_packages.py): it installs what is missing when it can, prints the
one apt-get line when it cannot, and never installs over a location the user chose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "tools" / "system_packages.py"


def fake_bin(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH with nothing on it but an apt-get (and a passwordless sudo) that log their arguments:
    openssl and systemd-analyze are then missing, as on a fresh minimal Debian."""
    folder, log = tmp_path / "bin", tmp_path / "apt.log"
    folder.mkdir()
    (folder / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (folder / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nPATH="$PATH:/usr/bin:/bin" exec "$@"\n')
    for tool in ("apt-get", "sudo"):
        (folder / tool).chmod(0o755)
    return folder, log


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    folder, _ = fake_bin(tmp_path)
    empty = tmp_path / "no-fashion"
    empty.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPIPE_")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**base, "PATH": str(folder), "EDGEPIPE_FASHION_MNIST_DIR": str(empty), **env})


def test_installs_only_what_is_missing_and_not_what_a_variable_hides(tmp_path: Path) -> None:
    result = run(tmp_path, EDGEPIPE_MOSQUITTO="/bin/true", EDGEPIPE_NATS_SERVER="/bin/true",
                 EDGEPIPE_CHROMIUM="/bin/true")  # data set hidden
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls == ["update -qq", "install -y -qq openssl systemd"]
    assert "dataset-fashion-mnist: not found at EDGEPIPE_FASHION_MNIST_DIR=" in result.stdout
    # the fake apt-get installed nothing: the one line to do it by hand follows
    assert "    sudo apt-get install -y openssl systemd\n" in result.stdout


def test_check_only_prints_the_apt_get_line(tmp_path: Path) -> None:
    result = run(tmp_path, "--check", EDGEPIPE_MOSQUITTO=str(tmp_path / "no-mosquitto"),
                 EDGEPIPE_NATS_SERVER="/bin/true", EDGEPIPE_CHROMIUM="/bin/true")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "apt.log").exists()
    assert "mosquitto: not found at EDGEPIPE_MOSQUITTO=" in result.stdout
    assert "missing system packages: openssl (the TLS tests, which make their own CA)" in result.stdout
    assert "    sudo apt-get install -y openssl systemd\n" in result.stdout


def test_all_present_says_so_and_installs_nothing(tmp_path: Path) -> None:
    folder, log = fake_bin(tmp_path)
    for tool in ("openssl", "systemd-analyze"):
        (folder / tool).symlink_to("/bin/true")
    idx = tmp_path / "fashion"
    idx.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte"):
        (idx / stem).write_bytes(b"")
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60,
                            env={"PATH": str(folder), "EDGEPIPE_FASHION_MNIST_DIR": str(idx),
                                 "EDGEPIPE_MOSQUITTO": "/bin/true", "EDGEPIPE_NATS_SERVER": "/bin/true",
                                 "EDGEPIPE_CHROMIUM": "/bin/true"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("system packages for the tests: all present")
    assert not log.exists()
