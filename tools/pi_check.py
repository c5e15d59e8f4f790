"""`make pi-check`: install and run edgepipe in arm64 Debian images, as a user would on a Raspberry Pi.

Raspberry Pi OS is Debian bookworm (Python 3.11) or trixie (Python 3.13) for arm64 with Raspberry Pi's
own packages on top. This builds each base with `mmdebstrap --arch=arm64 --variant=minbase` (a tarball
cached in `.cache/pi-rootfs/` or $EDGEPIPE_PI_CACHE), runs it under `qemu-user-static` through binfmt,
and inside a fresh copy of it does what the README tells a Pi user to do (tools/pi/steps.py says what),
then prints one table row per image. Root only. Not part of `make test`.

Exit status: 0 every image passed; 1 a step failed; 3 nothing failed but the network (a Debian mirror or
PyPI unreachable after retries) kept a step from running -- `.ci/run` reports that as a skip.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import time
from pathlib import Path

from tools.pi.host import NetworkUnavailable, PiCheckError, prepare_host
from tools.pi.images import CACHE, SUITES, base_tar
from tools.pi.steps import Row, build_images, check_image, host_models, table
from tools.pi.wheels import REQUIREMENTS, TFLITE214, wheelhouse

log = logging.getLogger("pi_check")
NETWORK_EXIT = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), help="default: all")
    parser.add_argument("--rebuild", action="store_true", help="build the images again even if cached")
    parser.add_argument("--no-tflite214", action="store_true", help="skip the tflite-runtime 2.14 trial")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the images' mounts come off
    suites = args.suite or list(SUITES)
    try:
        prepare_host()
        for suite in suites:
            wheelhouse(CACHE, SUITES[suite], REQUIREMENTS, "edge")
        if "bookworm" in suites and not args.no_tflite214:
            wheelhouse(CACHE, SUITES["bookworm"], TFLITE214, "tflite214")
    except NetworkUnavailable as exc:
        print(f"pi-check: network unavailable, nothing checked: {exc}", file=sys.stderr)
        return NETWORK_EXIT
    except PiCheckError as exc:
        print(f"pi-check: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    host = host_models()
    for suite in suites if args.rebuild else []:
        base_tar(suite).unlink(missing_ok=True)
    log.info("images: %s (logs in %s)", ", ".join(suites), CACHE)
    built = build_images(suites)
    rows = []
    for suite in suites:
        log.info("%s: start", suite)
        rows.append(check_image(suite, CACHE, host, suite == "bookworm" and not args.no_tflite214, built.get(suite)))
        log.info("%s: %s", suite, "FAILED" if rows[-1].failure else f"done in {rows[-1].wall / 60:.1f} min")
    print(table(rows))
    print(f"\ntotal wall time {(time.monotonic() - started) / 60:.1f} min (images built side by side)")
    if args.json:
        args.json.write_text(json.dumps([{**r.__dict__, "wall": r.wall} for r in rows], indent=2))
    return exit_status(rows)


def exit_status(rows: list[Row]) -> int:
    """0 all passed; 1 any real failure (a step, a test); NETWORK_EXIT when only the network stopped steps."""
    failed = [r for r in rows if r.failure or not re.fullmatch(r"\d+ passed(, \d+ skipped)?", r.tests)]
    if any(not r.network for r in failed):
        return 1
    return NETWORK_EXIT if failed else 0


if __name__ == "__main__":
    sys.exit(main())
