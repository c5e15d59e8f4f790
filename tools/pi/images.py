"""The arm64 images: a cached tarball of each suite's minbase root, and throw-away copies of it to run in.

The cache (`.cache/pi-rootfs/`, or EDGEPIPE_PI_CACHE: CI keeps it outside the clone so its next run is warm)
holds `<suite>-base.tar` with the package list it was built with, the wheelhouse and apt's downloads.

Pitfalls handled here (docs/DESIGN.md lists them): the host's /sys is not mounted in the image (the TFLite
runtime's CPU detection segfaults under qemu-user when it is); minbase has no /etc/hosts (so `localhost`
does not resolve): one is written; pip trusts its own CA list, so the host's bundle goes in with a pip.conf
naming it; a policy-rc.d keeps apt from starting daemons (mosquitto) on the host's network.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from tools.pi.host import PiCheckError, retry, run

log = logging.getLogger("pi_check")
ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGEPIPE_PI_CACHE") or ROOT / ".cache" / "pi-rootfs")
MIRROR = "http://deb.debian.org/debian"
SUITES = {"bookworm": "3.11", "trixie": "3.13"}
# Raspberry Pi OS Lite has python3, systemd, sudo and ca-certificates; python3-numpy comes with its
# picamera2 (the installer's venv sees it: --system-site-packages). pytest and jsonschema are for the
# edge tests: from Debian, so pip builds nothing under emulation. make runs `make demo`.
BASE_PACKAGES = ["python3", "ca-certificates", "systemd", "sudo", "make", "python3-numpy", "python3-pytest",
                 "python3-jsonschema"]
CHECKOUT = "/home/pi/edgepipe"  # where the user's copy of the repository lives in the image
WHEELS_IN_IMAGE = "/var/cache/edgepipe-wheels"


def base_tar(suite: str) -> Path:
    return CACHE / f"{suite}-base.tar"


def base_is_cached(suite: str) -> bool:
    marker = CACHE / f"{suite}-base.packages"
    return base_tar(suite).exists() and marker.exists() and marker.read_text().strip() == ",".join(BASE_PACKAGES)


def build_base(suite: str) -> None:
    """mmdebstrap the suite's minbase for arm64 into a tarball (apt's configure step runs under qemu)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f"{suite}-base.tar.tmp"
    tmp.unlink(missing_ok=True)
    log.info("%s: mmdebstrap --arch=arm64 --variant=minbase (minutes under emulation)", suite)
    retry(run, ["mmdebstrap", "--arch=arm64", "--variant=minbase", "--format=tar",
                f"--include={','.join(BASE_PACKAGES)}", suite, str(tmp), MIRROR],
          CACHE / f"{suite}-mmdebstrap.log", timeout=3600)
    tmp.rename(base_tar(suite))
    (CACHE / f"{suite}-base.packages").write_text(",".join(BASE_PACKAGES) + "\n")


def unmount_below(root: Path) -> None:
    """Unmount everything mounted at or below root, deepest first; fail rather than leave one."""
    prefix = str(root.resolve())
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    with open("/proc/self/mounts") as f:
        left = [line.split()[1] for line in f if line.split()[1].startswith(prefix + "/")]
    if left:
        raise PiCheckError(f"still mounted under {root}: {left}")


class Image:
    """A throw-away copy of a cached base, with /proc, /dev and the caches mounted while in use."""

    def __init__(self, suite: str, workdir: Path) -> None:
        self.suite = suite
        self.root = workdir / f"{suite}-run"
        self.log = workdir / f"{suite}.log"

    def __enter__(self) -> Image:
        if self.root.exists():
            unmount_below(self.root)  # a killed run may have left /dev bound in: never delete through it
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.log.write_text("")
        run(["tar", "-xf", str(base_tar(self.suite)), "-C", str(self.root)], self.log)
        self._configure()
        self._copy_checkout()
        self._mount()
        return self

    def __exit__(self, *exc: object) -> None:
        unmount_below(self.root)

    def _configure(self) -> None:
        etc = self.root / "etc"
        # minbase has no /etc/hosts: `localhost` would not resolve (the demo and tests use it)
        (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{os.uname().nodename}\n"
                                   "::1\tlocalhost ip6-localhost\n")
        shutil.copy("/etc/resolv.conf", etc / "resolv.conf")
        # pip inside never goes online: the wheels were downloaded on the host (no resets under qemu,
        # nothing built). The host's CA bundle still goes in for a pip run by hand (a re-signing proxy).
        host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if host_bundle.exists():
            shutil.copy(host_bundle, etc / "ssl/certs/ca-certificates.crt")
        wheels = f"{WHEELS_IN_IMAGE}/edge-py{SUITES[self.suite]}"
        (etc / "pip.conf").write_text(f"[global]\nno-index = true\nfind-links = {wheels}\n"
                                      "cert = /etc/ssl/certs/ca-certificates.crt\n")
        # apt must not start daemons (mosquitto) in a chroot: they would run on the host's network
        policy = self.root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        # a Pi's machine id is set at first boot; the image's is empty until then
        (etc / "machine-id").write_text(os.urandom(16).hex() + "\n")

    def _copy_checkout(self) -> None:
        """The user's clone: the files git knows (tracked and new), as `git clone` would give them."""
        checkout = self.root / CHECKOUT.lstrip("/")
        checkout.mkdir(parents=True)
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                               cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
        for name in filter(None, files):
            source = ROOT / name
            if source.is_file():
                (checkout / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, checkout / name)

    def _mount(self) -> None:
        # the host's /sys stays out: with it, TFLite's CPU detection segfaults under qemu-user
        self._bind(None, "proc", ["-t", "proc", "proc"])
        self._bind(Path("/dev"), "dev", ["--bind"])
        self._bind(Path("/dev/pts"), "dev/pts", ["--bind"])
        apt_cache = CACHE / f"apt-archives-{self.suite}"
        (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
        self._bind(apt_cache, "var/cache/apt/archives", ["--bind"])
        self._bind(CACHE / "wheels", WHEELS_IN_IMAGE.lstrip("/"), ["-o", "bind,ro"])

    def _bind(self, source: Path | None, target: str, how: list[str]) -> None:
        where = self.root / target
        where.mkdir(parents=True, exist_ok=True)
        run(["mount", *how, *([str(source)] if source else []), str(where)], self.log)

    def sh(self, script: str, timeout: float = 1800, check: bool = True, online: bool = False) -> str:
        """Run a shell script inside the image as root, with a Pi user's environment.

        Only the installer goes online (apt). Everything else runs in a network namespace of its own with
        just a loopback: a chroot shares the host's network, where `localhost:1883` may be the host's
        broker (it was, here) -- the image's own mosquitto and agent must be the ones that answer."""
        chroot = ["chroot", str(self.root), "/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8",
                  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "PIP_DISABLE_PIP_VERSION_CHECK=1", "/bin/bash", "-ec", script]
        if not online:
            chroot = ["unshare", "--net", "--", "/bin/sh", "-c", 'ip link set lo up && exec "$@"', "sh", *chroot]
        return run(chroot, self.log, timeout, check=check)
