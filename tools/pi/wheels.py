"""The wheelhouse: every Python package the images need, downloaded on the host for aarch64.

Inside the image pip installs offline from it (`no-index`, `find-links`): last session pip inside the
image had its PyPI connections reset while building dependencies under qemu. Only wheels are taken
(`--only-binary=:all:`), so nothing is compiled under emulation; a package without an aarch64 wheel for
the image's Python fails here, on the host, with pip's own message.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from tools.pi.host import retry, run

log = logging.getLogger("pi_check")
# the installer's `pip install /opt/edgepipe[edge]` (setuptools: pip builds the project in an isolated
# env), plus matplotlib for the demo's report
REQUIREMENTS = ["ai-edge-litert>=2.0,<3", "paho-mqtt>=2.0,<3", "setuptools>=68", "matplotlib>=3.7"]
# the fallback runtime the README names, for the bookworm trial (no wheels past Python 3.11)
TFLITE214 = ["tflite-runtime==2.14.*", "numpy<2"]
# pip takes a wheel only for the platform tags given: every glibc from manylinux2014 to bookworm's 2.36
PLATFORMS = ["manylinux2014_aarch64", *(f"manylinux_2_{v}_aarch64" for v in range(17, 37))]


def wheelhouse(cache: Path, python: str, requirements: list[str], name: str) -> Path:
    """A folder of aarch64 wheels for this Python with everything `requirements` pulls in (cached:
    downloaded again only when the list changes)."""
    dest = cache / "wheels" / f"{name}-py{python}"
    marker = dest / ".requirements"
    if marker.exists() and marker.read_text() == "\n".join(requirements):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    log.info("wheels for Python %s (aarch64): %s", python, ", ".join(requirements))
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")  # --isolated drops PIP_CERT: a re-signing proxy needs it
    cert = ["--cert", str(bundle)] if bundle.exists() else []
    # the host's pip config may add constraints or local indexes: only PyPI's files count here
    retry(run, [sys.executable, "-m", "pip", "download", "--quiet", "--isolated", *cert, "--dest", str(dest),
                *platforms, "--python-version", python, "--only-binary=:all:", *requirements],
          cache / f"wheels-{name}-py{python}.log", timeout=900)
    marker.write_text("\n".join(requirements))
    return dest
