"""The host side of pi-check: root, the tools, binfmt, and running commands with a log and retries.

A network step (the Debian mirror, PyPI) that fails for the network's sake raises `NetworkUnavailable`,
not a plain `PiCheckError`: CI reports that as a skip with the reason, a real failure fails the run."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("pi_check")
T = TypeVar("T")
# mmdebstrap: one apt run for the whole root (debootstrap's second stage configures package after package
# under qemu: 25 min here against a few); arch-test tells whether binfmt really runs arm64 binaries
HOST_TOOLS = {"mmdebstrap": "mmdebstrap", "qemu-aarch64-static": "qemu-user-static",
              "update-binfmts": "binfmt-support", "arch-test": "arch-test"}
# what apt, pip, curl and Python say when the network, not the code, is at fault
NETWORK_SIGNS = re.compile(
    r"Temporary failure (in name resolution|resolving)|Could not resolve|Connection reset|Connection refused"
    r"|Network is unreachable|No route to host|Failed to fetch|Unable to connect to|Max retries exceeded"
    r"|NewConnectionError|Read timed out|Connection timed out|Hash Sum mismatch|Could not connect to"
    r"|Name or service not known|Cannot initiate the connection", re.IGNORECASE)


class PiCheckError(RuntimeError):
    """A step failed; the message says which and where its log is."""


class NetworkUnavailable(PiCheckError):
    """A step failed because a mirror or PyPI could not be reached (after retries): not the code's fault."""


def binfmt_ready() -> bool:
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    return entry.exists() and entry.read_text().startswith("enabled")


def host_problems() -> list[str]:
    """What keeps this machine from running arm64 images, each with its fix."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (mmdebstrap, chroot and mounts need it)")
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
        retry(run, ["apt-get", "install", "-y", "--no-install-recommends", *sorted(set(HOST_TOOLS.values()))],
              env_extra={"DEBIAN_FRONTEND": "noninteractive"})
    if os.geteuid() == 0 and shutil.which("update-binfmts") and not binfmt_ready():
        if not Path("/proc/sys/fs/binfmt_misc/register").exists():
            run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"])
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    problems = host_problems()
    if problems:
        raise PiCheckError("cannot run arm64 images here: " + "; ".join(problems))
    if run(["arch-test", "arm64"], check=False).split()[-1:] != ["ok"]:
        raise PiCheckError("binfmt is enabled but arm64 binaries do not run here (arch-test arm64)")


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
        kind = NetworkUnavailable if NETWORK_SIGNS.search(output) else PiCheckError
        raise kind(f"`{' '.join(cmd)[:200]}` exited {code}{where}:\n{output[-1500:]}")
    return output


def retry(func: Callable[..., T], *args: object, delays: tuple[float, ...] = (10, 30, 90), **kwargs: object) -> T:
    """Call func; when it fails for the network's sake, wait and call it again (a reset connection
    is not a result). Any other failure, or the last network one, goes up."""
    for delay in (*delays, None):
        try:
            return func(*args, **kwargs)
        except NetworkUnavailable as exc:
            if delay is None:
                raise
            log.warning("network trouble, again in %.0f s: %s", delay, str(exc).splitlines()[0][:160])
            time.sleep(delay)
    raise AssertionError("unreachable")
