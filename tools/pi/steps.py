"""What pi-check does inside each image, as a Raspberry Pi user following the README would, and its row.

1. `deploy/install-pi.sh --with-mosquitto` from the user's clone (systemd does not run in a chroot: the
   installer verifies the unit with `systemd-analyze verify` and enables it without starting it), then
   pi-check's own assertions on what it left: user, permissions, broker user, enabled unit, the venv;
2. `python -m edge check` with the installed config, as the service user;
3. a venv in the clone (Debian's numpy/pytest/jsonschema plus the wheelhouse) and `pytest -m edge`;
4. the demo (`python -m tools.demo --broker mosquitto`: the image's mosquitto, on a free port);
5. the committed models on fixed inputs, compared with the same run on the host (x86-64);
6. on bookworm also tflite-runtime 2.14 (numpy<2), the README's fallback runtime, compared the same way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tools.pi import run_models
from tools.pi.host import NetworkUnavailable, PiCheckError, retry
from tools.pi.images import CHECKOUT, ROOT, SUITES, WHEELS_IN_IMAGE, Image, base_is_cached, build_base

log = logging.getLogger("pi_check")
T = TypeVar("T")
DEVICE = "pi-shed"
INSTALL = f"cd {CHECKOUT} && sudo deploy/install-pi.sh --device-id {DEVICE} --with-mosquitto"
# the installer's result, checked as a reviewer would on a real Pi (each line names what is wrong)
VERIFY = f"""fail() {{ echo "install check failed: $*"; exit 1; }}
mode() {{ [ "$(stat -c '%a %U %G' "$1")" = "$2" ] || fail "$1 is $(stat -c '%a %U %G' "$1"), not $2"; }}
id -nG edgepipe | grep -qw video || fail "user edgepipe is missing or not in group video"
mode /etc/edgepipe/agent.toml "640 root edgepipe"
grep -q '^device_id = "{DEVICE}"' /etc/edgepipe/agent.toml || fail "agent.toml lacks device_id {DEVICE}"
grep -q '^username = "{DEVICE}"' /etc/edgepipe/agent.toml || fail "agent.toml does not log in as {DEVICE}"
mode /etc/edgepipe/mqtt-password "640 root edgepipe"
mode /etc/mosquitto/edgepipe.passwd "640 root mosquitto"
grep -q '^{DEVICE}:\\$' /etc/mosquitto/edgepipe.passwd || fail "no hashed broker password for {DEVICE}"
[ -L /etc/systemd/system/multi-user.target.wants/edgepipe.service ] || fail "edgepipe.service is not enabled"
systemd-analyze verify /etc/systemd/system/edgepipe.service || fail "systemd-analyze verify"
cd / && /opt/edgepipe/.venv/bin/python -c 'import edge, ai_edge_litert
assert edge.__file__.startswith("/opt/edgepipe/"), edge.__file__'
echo "install verified"
"""
# `edge check` as the service would run it at boot: the image's mosquitto with the installed config (the
# ACL, no anonymous access, the agent's broker user), the installed agent.toml -- with the camera on the
# shipped frames, as picamera2 exists only in Raspberry Pi OS's own archive, not in Debian's
CHECK = f"""install -d -o mosquitto -g mosquitto /run/mosquitto /var/log/mosquitto
mosquitto -c /etc/mosquitto/mosquitto.conf & broker=$!  # as its unit starts it: root, then it drops to mosquitto
trap 'kill $broker' EXIT
sed -e 's|^source = "picamera2".*|source = "replay:{CHECKOUT}/data/sample-frames.npz"|' \
    /etc/edgepipe/agent.toml >/etc/edgepipe/agent-nocam.toml
chown root:edgepipe /etc/edgepipe/agent-nocam.toml && chmod 0640 /etc/edgepipe/agent-nocam.toml
grep -q '^source = "replay:' /etc/edgepipe/agent-nocam.toml || {{ echo "no picamera2 camera to replace"; exit 1; }}
for i in $(seq 60); do python3 -c 'import socket; socket.create_connection(("localhost", 1883))' 2>/dev/null && break
  sleep 1; done
runuser -u edgepipe -- /opt/edgepipe/.venv/bin/python -m edge check --config /etc/edgepipe/agent-nocam.toml
"""
VERSIONS = ("cd / && /opt/edgepipe/.venv/bin/python -c 'import platform, numpy, importlib.metadata as m; "
            "print(platform.python_version(), m.version(\"ai-edge-litert\"), numpy.__version__, "
            "\"debian\" if numpy.__file__.startswith(\"/usr/lib/python3/\") else \"wheel\", platform.machine())'")
# --no-compile: byte-compiling fonttools & co. under qemu took minutes; imports compile what they use
DEV_VENV = (f"cd {CHECKOUT} && python3 -m venv --system-site-packages .venv"
            " && .venv/bin/pip install --quiet --no-compile -e '.[edge]' 'matplotlib>=3.7'")
# only the files that mark tests `edge`: the others import TensorFlow when collected
TESTS = (f"cd {CHECKOUT} && .venv/bin/python -m pytest -m edge -q -p no:cacheprovider"
         " $(grep -l 'pytest.mark.edge' tests/test_*.py)")
DEMO = (f"cd {CHECKOUT} && .venv/bin/python -m tools.demo --broker mosquitto --quiet --summary-json /tmp/demo.json"
        " && echo \"DEMO-JSON $(tr -d '\\n' </tmp/demo.json)\"")
MODELS = f"cd / && PYTHONPATH={CHECKOUT} /opt/edgepipe/.venv/bin/python -m tools.pi.run_models {CHECKOUT}/models"
TFLITE214 = (f"python3 -m venv --system-site-packages /opt/tflite214 && /opt/tflite214/bin/pip install --quiet "
             f"--find-links {WHEELS_IN_IMAGE}/tflite214-py3.11 'numpy<2' 'tflite-runtime==2.14.*'"
             f" && cd / && EDGEPIPE_RUNTIME=tflite_runtime PYTHONPATH={CHECKOUT} /opt/tflite214/bin/python"
             f" -m tools.pi.run_models {CHECKOUT}/models")


@dataclass
class Row:
    """One image's results: the table's row."""

    image: str
    python: str = "?"
    runtime: str = "?"
    numpy: str = "?"
    tests: str = "not run"
    demo: str = "not run"
    models: str = "not run"
    tflite214: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    failure: str = ""
    network: bool = False  # the failure came from the network (mirror, PyPI), not from the code

    @property
    def wall(self) -> float:
        return sum(self.seconds.values())


def timed(row: Row, name: str, func: Callable[..., T], *args: object) -> T:
    started = time.monotonic()
    try:
        return func(*args)
    finally:
        row.seconds[name] = row.seconds.get(name, 0.0) + time.monotonic() - started


def demo_json(output: str) -> dict:
    line = next((x for x in reversed(output.splitlines()) if x.startswith("DEMO-JSON ")), None)
    if line is None:
        raise PiCheckError(f"the demo printed no summary: {output[-500:]}")
    return json.loads(line[len("DEMO-JSON "):])


def demo_problems(s: dict) -> list[str]:
    """What makes a demo run a failure rather than a slow machine's result: a missed segment, a false alert,
    an error, no frame classified at all, a forecast far off x86's (RMSE 12.4). Dropped frames are fine."""
    problems = [f"{s['segments_detected']} of {len(s['segments'])} segments flagged"] \
        if s["segments_detected"] != len(s["segments"]) else []
    problems += [f"{s['false_alerts']} false alerts"] if s["false_alerts"] else []
    problems += [f"{s['errors']} errors reported"] if s["errors"] else []
    problems += ["no frame classified"] if not s["frames_classified"] else []
    problems += [f"forecast RMSE {s['forecast_rmse']}"] if not 0 <= s["forecast_rmse"] < 20 else []
    return problems


def demo_summary(s: dict) -> str:
    """The demo's summary in one cell, from its --summary-json: frames, drops, segments, RMSE, errors."""
    return (f"{s['frames_classified']} of {s['frames_sent']} frames classified ({s['frame_accuracy']:.1%}), "
            f"{s['frames_dropped']} skipped as stale; {s['segments_detected']} of {len(s['segments'])} segments "
            f"flagged, {s['false_alerts']} false; {s['forecasts']} forecasts, RMSE {s['forecast_rmse']:.1f}; "
            f"{s['errors']} errors")


def summarize_tests(output: str) -> str:
    passed = re.search(r"(\d+) passed", output)
    bad = re.findall(r"(\d+) (failed|errors?)", output)
    skipped = re.search(r"(\d+) skipped", output)
    if not passed and not bad:
        last = output.strip().splitlines()[-1][:80] if output.strip() else "no output"
        return f"not run: {last}"
    parts = [f"{passed.group(1) if passed else 0} passed", *(f"{n} {what}" for n, what in bad)]
    return ", ".join(parts + ([f"{skipped.group(1)} skipped"] if skipped else []))


def host_models() -> dict | None:
    """The models' outputs on this host (x86-64), or None when it has no runtime to say them."""
    result = subprocess.run([sys.executable, "-m", "tools.pi.run_models", str(ROOT / "models")], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        return run_models.parse(result.stdout)
    except ValueError:
        log.warning("host models: %s", result.stderr[-300:])
        return None


def compare(image_run: dict, reference: dict | None, against: str = "x86-64") -> str:
    """How the image's outputs differ from a reference run's, model by model (quantized ones named, the
    float32 twins summed up in one number)."""
    what = f"{len(image_run['outputs'])} models ran ({image_run['runtime']} {image_run['version']}, " \
           f"numpy {image_run['numpy']})"
    if reference is None:
        return what + "; no reference run to compare"
    diffs = run_models.differences(image_run, reference)
    quantized = ", ".join(f"{name} {d:.3g}" + (f" ({n} of {size} values)" if n else "")
                          for name, (d, n, size) in diffs.items() if not name.endswith("_float32"))
    floats = max((d for name, (d, _, _) in diffs.items() if name.endswith("_float32")), default=0.0)
    return what + f"; largest difference from {against} {reference['runtime']}: {quantized}; float32 {floats:.2g}"


def run_steps(image: Image, row: Row, host: dict | None, tflite214: bool) -> None:
    timed(row, "install", retry, image.sh, INSTALL, 1800, True, True)  # apt-get update/install reach the Debian mirror
    timed(row, "verify", image.sh, VERIFY)
    timed(row, "check", image.sh, CHECK)
    row.python, litert, numpy, origin, machine = image.sh(VERSIONS).split()[-5:]
    row.runtime, row.numpy = f"ai-edge-litert {litert}", f"{numpy} ({origin})"
    if machine != "aarch64":
        raise PiCheckError(f"the image runs as {machine}, not aarch64: binfmt is not doing its job")
    timed(row, "venv", image.sh, DEV_VENV)
    row.tests = summarize_tests(timed(row, "tests", image.sh, TESTS, 1800, False))  # count failures, go on
    summary = demo_json(timed(row, "demo", image.sh, DEMO))
    row.demo = demo_summary(summary)
    if demo_problems(summary):
        raise PiCheckError(f"demo: {'; '.join(demo_problems(summary))} ({row.demo})")
    litert = run_models.parse(timed(row, "models", image.sh, MODELS))
    row.models = compare(litert, host)
    if tflite214:
        try:
            old = run_models.parse(timed(row, "tflite214", image.sh, TFLITE214))
            row.tflite214 = "yes: " + compare(old, litert, "arm64")
        except PiCheckError as exc:
            row.tflite214 = f"no: {str(exc).strip().splitlines()[-1][:160]}"


def build_images(suites: list[str]) -> dict[str, tuple[float, Exception | None]]:
    """Build the missing bases side by side (apt's configure step runs one package at a time under qemu:
    two builds share two cores): per suite its wall time and what stopped it, if anything."""
    def build(suite: str) -> tuple[float, Exception | None]:
        started = time.monotonic()
        try:
            build_base(suite)
            return time.monotonic() - started, None
        except (PiCheckError, subprocess.TimeoutExpired) as exc:
            return time.monotonic() - started, exc

    missing = [s for s in suites if not base_is_cached(s)]
    with ThreadPoolExecutor(max(1, len(missing))) as pool:
        return dict(zip(missing, pool.map(build, missing)))


def check_image(suite: str, workdir: Path, host: dict | None, tflite214: bool,
                built: tuple[float, Exception | None] | None = None) -> Row:
    row = Row(image=f"Debian {suite} arm64 (qemu)")
    try:
        if built is not None:
            row.seconds["image"], failure = built
            if failure is not None:
                raise failure
        with Image(suite, workdir) as image:
            run_steps(image, row, host, tflite214)
        if not row.python.startswith(SUITES[suite]):
            raise PiCheckError(f"Python {row.python} in {suite}, expected {SUITES[suite]}")
    except (PiCheckError, subprocess.TimeoutExpired) as exc:
        row.failure = str(exc)
        row.network = isinstance(exc, NetworkUnavailable)
        log.error("%s: %s", suite, exc)
    return row


def table(rows: list[Row]) -> str:
    lines = ["| image | Python | runtime (numpy) | `pytest -m edge` | demo | wall time, min |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        steps = ", ".join(f"{k} {v / 60:.1f}" for k, v in r.seconds.items())
        demo = r.demo if not r.failure else f"FAILED: {r.failure.strip().splitlines()[0][:100]}"
        lines.append(f"| {r.image} | {r.python} | {r.runtime} (numpy {r.numpy}) | {r.tests} | {demo} | "
                     f"{r.wall / 60:.1f} ({steps}) |")
    lines += [f"\n{r.image}: models: {r.models}" for r in rows]
    lines += [f"{r.image}: tflite-runtime 2.14: {r.tflite214}" for r in rows if r.tflite214]
    return "\n".join(lines)
