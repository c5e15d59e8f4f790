"""The system packages the test suite needs: found the way the tests look for them, installed when we can.

`make test` runs this with the system Python before it makes `.venv` (so: standard library only).
As root, or with passwordless sudo, on Debian, Ubuntu or Raspberry Pi OS it apt-installs what is
missing and nothing else; otherwise it prints the one `apt-get install` line, and each test that needs
a missing package skips with that package's name (tests/conftest.py asks this module, so the
installer and the skips cannot disagree about what is there).

Variables point the suite at another copy -- or, set to an empty folder or a path that does not
exist, hide the package to check the skips on a machine that has it:
EDGEPIPE_MOSQUITTO and EDGEPIPE_NATS_SERVER (the broker binaries), EDGEPIPE_CHROMIUM (the browser) and
EDGEPIPE_FASHION_MNIST_DIR (the four
IDX files; the training side's loader reads the same variable). A package hidden this way is never installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Debian's dataset-fashion-mnist puts its IDX files here (training/datasets/images.py reads them from there too)
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SBIN = ("/usr/sbin", "/usr/local/sbin")  # Debian puts both brokers there, and sbin is not on a user's PATH


def _binary(name: str, variable: str) -> str | None:
    """`variable` if set (nothing else then), else PATH, else sbin."""
    chosen = os.environ.get(variable)
    candidates = [chosen] if chosen is not None else [shutil.which(name), *(f"{d}/{name}" for d in SBIN)]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def mosquitto_binary() -> str | None:
    """The mosquitto the tests start: EDGEPIPE_MOSQUITTO if set (nothing else then), else PATH, else sbin."""
    return _binary("mosquitto", "EDGEPIPE_MOSQUITTO")


def nats_binary() -> str | None:
    """The nats-server the cluster tests start: EDGEPIPE_NATS_SERVER if set, else PATH, else sbin."""
    return _binary("nats-server", "EDGEPIPE_NATS_SERVER")


def chromium_binary() -> str | None:
    """The browser the fleet page test drives headless: EDGEPIPE_CHROMIUM if set, else PATH."""
    return _binary("chromium", "EDGEPIPE_CHROMIUM")


def fashion_mnist_dir() -> Path | None:
    """The folder with all four Fashion-MNIST IDX files (gzipped or not), if there is one."""
    folder = Path(os.environ.get("EDGEPIPE_FASHION_MNIST_DIR") or FASHION_DEBIAN_DIR)
    found = all((folder / stem).is_file() or (folder / f"{stem}.gz").is_file() for stem in FASHION_IDX_STEMS)
    return folder if found else None


@dataclass(frozen=True)
class SystemPackage:
    """One Debian package, how to tell it is there, and the variable that may point elsewhere."""

    name: str
    needed_for: str
    present: Callable[[], object]
    override: str | None = None  # set: the user chose the location; we never install over it

    def is_present(self) -> bool:
        return bool(self.present())

    def overridden(self) -> bool:
        return self.override is not None and self.override in os.environ


# what the tests use, by Debian package name (mosquitto_passwd comes with the mosquitto package)
PACKAGES: dict[str, SystemPackage] = {p.name: p for p in (
    SystemPackage("mosquitto", "the broker tests", mosquitto_binary, "EDGEPIPE_MOSQUITTO"),
    SystemPackage("nats-server", "the NATS cluster tests (broker failover, node loss)", nats_binary,
                  "EDGEPIPE_NATS_SERVER"),
    SystemPackage("openssl", "the TLS tests, which make their own CA", lambda: shutil.which("openssl")),
    SystemPackage("dataset-fashion-mnist", "the CNN and GAN tests on all 70,000 images", fashion_mnist_dir,
                  "EDGEPIPE_FASHION_MNIST_DIR"),
    SystemPackage("systemd", "the unit file check, systemd-analyze verify", lambda: shutil.which("systemd-analyze")),
    SystemPackage("chromium", "the fleet page test (headless Chromium renders `fleet status --html`)",
                  chromium_binary, "EDGEPIPE_CHROMIUM"),
)}
# what `make test` needs before any test runs: Debian's python3 makes no venv without it
VENV_PACKAGE = SystemPackage("python3-venv", "`make venv`", lambda: importlib.util.find_spec("ensurepip"))


def missing(names: list[str] | None = None) -> list[SystemPackage]:
    return [PACKAGES[n] for n in (list(PACKAGES) if names is None else names) if not PACKAGES[n].is_present()]


def skip_reason(packages: list[SystemPackage]) -> str:
    """What a test that needs `packages` says when it skips: the package names and the command."""
    names = [p.name for p in packages]
    hidden = [f"not found at {p.override}={os.environ[p.override]!r}" for p in packages if p.overridden()]
    return (f"needs {', '.join(names)} (apt-get install {' '.join(names)}"
            + "".join(f"; {h}" for h in hidden) + ")")


def install_command() -> list[str] | None:
    """apt-get as root or through passwordless sudo; None when neither can install."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return ["apt-get"]
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", "apt-get"]
    return None


def ensure(install: bool = True) -> int:
    """Install the missing packages when we can, else say which tests will skip and how to run them.
    Always 0: a missing package skips tests, and without python3-venv `make venv` stops with its own words."""
    lacking = [p for p in [VENV_PACKAGE, *PACKAGES.values()] if not p.is_present()]
    if not lacking:
        print(f"system packages for the tests: all present ({', '.join(PACKAGES)})")
        return 0
    for p in lacking:
        if p.overridden():
            print(f"{p.name}: not found at {p.override}={os.environ[p.override]!r}, which you set, so not "
                  f"installed; {p.needed_for} skip")
    wanted = [p for p in lacking if not p.overridden()]
    apt = install_command() if install and wanted else None
    if apt:
        names = [p.name for p in wanted]
        print(f"installing system packages for the tests: {' '.join(names)}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = (subprocess.run([*apt, "update", "-qq"], env=env).returncode == 0
                and subprocess.run([*apt, "install", "-y", "-qq", *names], env=env).returncode == 0)
        if not done:
            print("warning: apt-get failed; the tests that need these packages will skip", file=sys.stderr)
        wanted = [p for p in wanted if not p.is_present()]
    if wanted:
        print("missing system packages: " + "; ".join(f"{p.name} ({p.needed_for})" for p in wanted)
              + ". The tests that need them skip. To run them:")
        print(f"    sudo apt-get install -y {' '.join(p.name for p in wanted)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say what is missing; install nothing")
    return ensure(install=not parser.parse_args(argv).check)


if __name__ == "__main__":
    sys.exit(main())
