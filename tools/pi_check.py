"""`make pi-check`: install and run edgepipe in arm64 Debian images, as a user would on a Raspberry Pi.

Raspberry Pi OS is Debian bookworm (Python 3.11) or trixie (Python 3.13) for arm64 with Raspberry
Pi's own packages on top. This builds each base with `debootstrap --arch=arm64 --variant=minbase`
(cached in `.cache/pi-rootfs/`, git-ignored), runs it under `qemu-user-static` through binfmt, and
inside a fresh copy of it does what the README tells a Pi user to do:

1. `deploy/install-pi.sh --with-mosquitto` from a copy of the repository (systemd is not running
   in a chroot, so the installer enables the service without starting it, and checks the unit with
   `systemd-analyze verify`);
2. `python -m edge check` with the installed config, as the service user `edgepipe`;
3. the TF-free tests, `pytest -m edge`, in the checkout's venv;
4. `make demo` (the demo starts its own mosquitto);
5. on bookworm also tflite-runtime 2.14 (numpy<2), the fallback runtime: do the committed models
   load and run there?

and prints one table row per image. It needs root (debootstrap, chroot, mounts). Not part of
`make test`: with a cold cache it takes about 20 minutes on 2 cores.

Pitfalls it handles (docs/DESIGN.md has them): the host's /sys is not mounted in the chroot (the
TFLite runtime's CPU detection segfaults under qemu-user when it is); minbase has no /etc/hosts (so
`localhost` does not resolve) -- one is written; minbase has no CA bundle (the image gets the
`ca-certificates` package) and pip trusts only its own CA list, so the host's bundle is copied in
with a pip.conf naming it (needed where a proxy re-signs TLS); a policy-rc.d keeps apt from
starting daemons inside the chroot.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("pi_check")
ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "pi-rootfs"
MIRROR = "http://deb.debian.org/debian"
# What Raspberry Pi OS Lite has that minbase lacks, and that a user of this README relies on.
BASE_PACKAGES = ["python3", "ca-certificates", "systemd", "sudo", "make"]
SUITES = {"bookworm": "3.11", "trixie": "3.13"}
CHECKOUT = "/home/pi/edgepipe"  # where the user's copy of the repository lives in the image
HOST_TOOLS = {"debootstrap": "debootstrap", "qemu-aarch64-static": "qemu-user-static",
              "update-binfmts": "binfmt-support"}


class PiCheckError(RuntimeError):
    """A step failed; the message says which and where its log is."""


@dataclass
class Row:
    """One image's results: the table's row."""

    image: str
    python: str = "?"
    runtime: str = "?"
    tests: str = "not run"
    demo: str = "not run"
    tflite214: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    failure: str = ""

    @property
    def wall(self) -> float:
        return sum(self.seconds.values())


# --- the host ---------------------------------------------------------------------------------
def binfmt_ready() -> bool:
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    return entry.exists() and entry.read_text().startswith("enabled")


def host_problems() -> list[str]:
    """What keeps this machine from running arm64 images, each with its fix."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (debootstrap, chroot and mounts need it)")
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        problems.append(f"missing tools: apt-get install -y {' '.join(missing)}")
    elif not binfmt_ready():
        problems.append("binfmt for aarch64 is not enabled: mount -t binfmt_misc binfmt_misc "
                        "/proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64")
    return problems


def prepare_host() -> None:
    """Install the host tools and enable binfmt when root can; otherwise say what is missing."""
    if os.geteuid() == 0 and any(shutil.which(tool) is None for tool in HOST_TOOLS):
        run(["apt-get", "install", "-y", *sorted(set(HOST_TOOLS.values()))], env_extra={
            "DEBIAN_FRONTEND": "noninteractive"})
    if os.geteuid() == 0 and shutil.which("update-binfmts") and not binfmt_ready():
        if not Path("/proc/sys/fs/binfmt_misc/register").exists():
            run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"])
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    problems = host_problems()
    if problems:
        raise PiCheckError("cannot run arm64 images here: " + "; ".join(problems))


def run(cmd: list[str], log_file: Path | None = None, timeout: float = 1800,
        env_extra: dict[str, str] | None = None, check: bool = True) -> str:
    """Run a host command and return its output; with log_file the output goes there as it comes
    (appended: `tail -f` it to follow a slow step)."""
    env = {**os.environ, **(env_extra or {})}
    if log_file is None:
        result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout, env=env)
        code, output = result.returncode, result.stdout + result.stderr
    else:
        with log_file.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            start = f.tell()
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, env=env).returncode
        with log_file.open("rb") as f:
            f.seek(start)
            output = f.read().decode(errors="replace")
        with log_file.open("a") as f:
            f.write(f"[exit {code}]\n")
    if check and code != 0:
        where = f" (log: {log_file})" if log_file else ""
        raise PiCheckError(f"`{' '.join(cmd)[:200]}` exited {code}{where}:\n{output[-1500:]}")
    return output


# --- the images -------------------------------------------------------------------------------
def base_dir(suite: str) -> Path:
    return CACHE / f"{suite}-base"


def base_is_cached(suite: str) -> bool:
    marker = base_dir(suite) / ".edgepipe-base"
    return marker.exists() and marker.read_text().strip() == ",".join(BASE_PACKAGES)


def build_base(suite: str) -> None:
    """debootstrap the suite's minbase for arm64 (the slow part: its second stage runs under qemu)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f"{suite}-base.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    log.info("%s: debootstrap --arch=arm64 --variant=minbase (a few minutes under emulation)", suite)
    run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
         suite, str(tmp), MIRROR], CACHE / f"{suite}-debootstrap.log", timeout=3600)
    (tmp / ".edgepipe-base").write_text(",".join(BASE_PACKAGES) + "\n")
    if base_dir(suite).exists():
        shutil.rmtree(base_dir(suite))
    tmp.rename(base_dir(suite))


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
        self.mounts: list[Path] = []

    def __enter__(self) -> Image:
        if self.root.exists():
            unmount_below(self.root)  # a killed run may have left /dev bound in: never delete through it
            shutil.rmtree(self.root)
        self.log.write_text("")
        run(["cp", "-a", "--reflink=auto", str(base_dir(self.suite)), str(self.root)], self.log)
        self._configure()
        self._mount()
        return self

    def __exit__(self, *exc: object) -> None:
        unmount_below(self.root)
        self.mounts.clear()

    def _configure(self) -> None:
        etc = self.root / "etc"
        # minbase has no /etc/hosts: `localhost` would not resolve (the demo and tests use it)
        (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{os.uname().nodename}\n"
                                   "::1\tlocalhost ip6-localhost\n")
        shutil.copy("/etc/resolv.conf", etc / "resolv.conf")
        # pip trusts its own CA list, not the system's: where TLS is re-signed on the way (a CI or
        # company proxy) it needs the host's bundle, which trusts that proxy, and a pip.conf naming it
        host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if host_bundle.exists():
            shutil.copy(host_bundle, etc / "ssl/certs/ca-certificates.crt")
            (etc / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
                                          "retries = 10\ntimeout = 60\n")  # a reset connection is not a result
        # apt must not start daemons (mosquitto) in a chroot: they would run on the host's network
        policy = self.root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        # a Pi's hostname is set at first boot; the image's machine-id is empty until then
        (etc / "machine-id").write_text(os.urandom(16).hex() + "\n")
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
        pip_cache = CACHE / "pip-cache"
        apt_cache = CACHE / f"apt-archives-{self.suite}"
        for path in (pip_cache, apt_cache / "partial"):
            path.mkdir(parents=True, exist_ok=True)
        self._bind(pip_cache, "root/.cache/pip", ["--bind"])
        self._bind(apt_cache, "var/cache/apt/archives", ["--bind"])

    def _bind(self, source: Path | None, target: str, how: list[str]) -> None:
        where = self.root / target
        where.mkdir(parents=True, exist_ok=True)
        run(["mount", *how, *([str(source)] if source else []), str(where)], self.log)
        self.mounts.append(where)

    def sh(self, script: str, timeout: float = 1800, check: bool = True) -> str:
        """Run a shell script inside the image as root, with a Pi user's environment."""
        return run(["chroot", str(self.root), "/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "PIP_DISABLE_PIP_VERSION_CHECK=1", "/bin/bash", "-ec", script], self.log, timeout, check=check)


# --- what runs inside -------------------------------------------------------------------------
# the README's deployment line, with the local broker
INSTALL = f"cd {CHECKOUT} && sudo deploy/install-pi.sh --device-id pi-shed --with-mosquitto"
CHECK = "runuser -u edgepipe -- /opt/edgepipe/.venv/bin/python -m edge check --config /etc/edgepipe/agent.toml"
VERSIONS = ("/opt/edgepipe/.venv/bin/python -c 'import platform, importlib.metadata as m; "
            "print(platform.python_version(), m.version(\"ai-edge-litert\"), platform.machine())'")
# only the files that mark tests `edge`: the others import TensorFlow at collection time
TESTS = (f"cd {CHECKOUT} && make --no-print-directory venv-demo && .venv/bin/pip install --quiet pytest jsonschema"
         " && .venv/bin/python -m pytest -m edge -q -p no:cacheprovider $(grep -l 'pytest.mark.edge' tests/test_*.py)")
DEMO = f"cd {CHECKOUT} && make --no-print-directory demo DEMO_ARGS='--broker mosquitto --quiet'"
TFLITE214 = f"""python3 -m venv /opt/tflite214
/opt/tflite214/bin/pip install --quiet 'numpy<2' 'tflite-runtime==2.14.*'
cd / && EDGEPIPE_RUNTIME=tflite_runtime PYTHONPATH={CHECKOUT} /opt/tflite214/bin/python - <<'EOF'
import numpy as np
from edge.manifest import read_manifest
from edge.runtime import TFLiteModel, load_runtime
manifest = read_manifest("{CHECKOUT}/models/manifest.json")
rt = load_runtime()
rng = np.random.default_rng(0)
for name, entry in manifest.models.items():
    model = TFLiteModel.from_entry(entry, "{CHECKOUT}/models")
    out = model.run({{t.name: rng.uniform(0, 1, t.shape).astype(np.float32) for t in entry.inputs}})
    assert all(np.isfinite(v).all() for v in out.values()), name
print(f"tflite214: {{rt.name}} {{rt.version}}, numpy {{np.__version__}}: {{len(manifest.models)}} models ran")
EOF"""


def timed(row: Row, name: str, func, *args):  # noqa: ANN001, ANN202 -- a thin stopwatch
    started = time.monotonic()
    try:
        return func(*args)
    finally:
        row.seconds[name] = time.monotonic() - started


def demo_summary(output: str) -> str:
    """The demo's summary in one cell: frames, segments flagged, forecast RMSE."""
    frames = re.search(r"frames classified:\s*(\d+)(?: of (\d+))?[^\n]*?accuracy ([\d.]+%)", output)
    segments = re.search(r"anomaly segments:\s*(\d+ of \d+)", output)
    rmse = re.search(r"RMSE ([\d.]+)", output)
    parts = []
    if frames:
        parts.append(f"{frames.group(1)}{'/' + frames.group(2) if frames.group(2) else ''} frames "
                     f"({frames.group(3)})")
    if segments:
        parts.append(f"{segments.group(1)} segments")
    if rmse:
        parts.append(f"RMSE {rmse.group(1)}")
    return ", ".join(parts) or "no summary"


def check_image(suite: str, workdir: Path, tflite214: bool) -> Row:
    row = Row(image=f"Debian {suite} arm64")
    try:
        if not base_is_cached(suite):
            timed(row, "debootstrap", build_base, suite)
        with Image(suite, workdir) as image:
            timed(row, "install", image.sh, INSTALL)
            timed(row, "check", image.sh, CHECK)
            row.python, row.runtime, machine = image.sh(VERSIONS).split()[-3:]
            row.runtime = f"ai-edge-litert {row.runtime}"
            if machine != "aarch64":
                raise PiCheckError(f"the image runs as {machine}, not aarch64: binfmt is not doing its job")
            tests = timed(row, "tests", image.sh, TESTS, 1800, False)  # count failures, do not stop
            passed = re.search(r"(\d+) passed", tests)
            failed = re.search(r"(\d+) (failed|error)", tests)
            row.tests = (f"{passed.group(1)} passed" + (f", {failed.group(0)}" if failed else "") if passed
                         else f"not run: {tests.strip().splitlines()[-1][:80] if tests.strip() else 'no output'}")
            row.demo = demo_summary(timed(row, "demo", image.sh, DEMO))
            if tflite214:
                try:
                    row.tflite214 = timed(row, "tflite214", image.sh, TFLITE214).strip().splitlines()[-1]
                except PiCheckError as exc:
                    row.tflite214 = f"failed: {str(exc).splitlines()[-1][:120]}"
    except (PiCheckError, subprocess.TimeoutExpired) as exc:
        row.failure = str(exc)
        log.error("%s: %s", suite, exc)
    return row


def table(rows: list[Row]) -> str:
    lines = ["| image | Python | runtime | tests (`pytest -m edge`) | demo | wall time |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        steps = ", ".join(f"{k} {v / 60:.1f}" for k, v in r.seconds.items())
        demo = r.demo if not r.failure else f"FAILED: {r.failure.splitlines()[0][:80]}"
        lines.append(f"| {r.image} | {r.python} | {r.runtime} | {r.tests} | {demo} | "
                     f"{r.wall / 60:.1f} min ({steps}) |")
    lines += [f"\n{r.image}, tflite-runtime 2.14: {r.tflite214}" for r in rows if r.tflite214]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), help="default: all")
    parser.add_argument("--rebuild", action="store_true", help="debootstrap again even if cached")
    parser.add_argument("--no-tflite214", action="store_true", help="skip the tflite-runtime 2.14 trial")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the images' mounts come off
    prepare_host()
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = []
    for suite in args.suite or list(SUITES):
        if args.rebuild and base_dir(suite).exists():
            shutil.rmtree(base_dir(suite))
        log.info("%s: start (logs in %s)", suite, CACHE)
        rows.append(check_image(suite, CACHE, tflite214=suite == "bookworm" and not args.no_tflite214))
        log.info("%s: %s", suite, "FAILED" if rows[-1].failure else f"done in {rows[-1].wall / 60:.1f} min")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    expected = [SUITES[s] for s in (args.suite or list(SUITES))]
    wrong = [r for r, py in zip(rows, expected) if not r.failure and not r.python.startswith(py)]
    for r in wrong:
        print(f"{r.image}: Python {r.python}, expected {SUITES[r.image.split()[1]]}", file=sys.stderr)
    bad = [r for r in rows if r.failure or not re.fullmatch(r"\d+ passed", r.tests)]
    return 1 if bad or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
