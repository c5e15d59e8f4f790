"""`make pi-check`'s own logic, without an image (the image runs are pi-check itself: `make pi-check`).

What is checked here could make pi-check lie: a network failure taken for a code failure (CI would fail
for a mirror's outage) or the reverse (CI would skip a real failure), a failed test counted as a pass,
and the model comparison that says the arm64 runtimes give x86's numbers.
"""

from __future__ import annotations

import copy
import json
import sys

import pytest

from tools.pi import run_models
from tools.pi.host import NetworkUnavailable, PiCheckError, retry, run
from tools.pi.steps import Row, demo_json, demo_problems, demo_summary, summarize_tests
from tools.pi_check import NETWORK_EXIT, exit_status

pytestmark = pytest.mark.edge


def test_an_unresolvable_host_is_a_network_failure_and_a_plain_exit_is_not() -> None:
    fetch = "import socket; socket.getaddrinfo('edgepipe-pi-check.invalid', 80)"  # no proxy in the way
    with pytest.raises(NetworkUnavailable):
        run([sys.executable, "-c", fetch])
    with pytest.raises(PiCheckError) as plain:
        run([sys.executable, "-c", "raise SystemExit('install-pi.sh: --device-id needs a value')"])
    assert not isinstance(plain.value, NetworkUnavailable)


def test_retry_tries_network_failures_again_but_not_real_ones() -> None:
    calls: list[str] = []

    def flaky(kind: type[Exception]) -> str:
        calls.append(kind.__name__)
        if len(calls) < 3:
            raise kind("Connection reset by peer")
        return "ok"

    assert retry(flaky, NetworkUnavailable, delays=(0, 0, 0)) == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(NetworkUnavailable):
        retry(flaky, NetworkUnavailable, delays=(0,))
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(PiCheckError):
        retry(flaky, PiCheckError, delays=(0, 0))
    assert len(calls) == 1


@pytest.mark.parametrize("output, summary", [
    ("92 passed in 41.2s", "92 passed"),
    ("1 failed, 91 passed in 40.0s", "91 passed, 1 failed"),
    ("90 passed, 2 errors in 3s", "90 passed, 2 errors"),
    ("ERROR: file or directory not found: tests/x.py", "not run: ERROR: file or directory not found: tests/x.py"),
])
def test_a_test_run_is_summed_up_with_its_failures(output: str, summary: str) -> None:
    assert summarize_tests(output) == summary


def test_only_a_run_stopped_by_the_network_alone_exits_as_a_skip() -> None:
    ok = Row("bookworm", tests="92 passed")
    network = Row("trixie", failure="apt-get update: Temporary failure resolving", network=True)
    broken = Row("trixie", failure="install check failed: edgepipe.service is not enabled")
    assert exit_status([ok, ok]) == 0
    assert exit_status([ok, network]) == NETWORK_EXIT
    assert exit_status([network, broken]) == 1
    assert exit_status([ok, Row("trixie", tests="91 passed, 1 failed")]) == 1
    assert exit_status([ok, Row("trixie", tests="90 passed, 2 skipped")]) == 0  # skips are in the table
    assert exit_status([ok, Row("trixie", tests="not run: no output")]) == 1


def test_the_model_comparison_sees_a_changed_output() -> None:
    from tests.conftest import MODELS_DIR

    first = run_models.outputs(MODELS_DIR)
    again = run_models.parse("pip says hello\n" + run_models.MARK + json.dumps(run_models.outputs(MODELS_DIR)))
    assert run_models.largest_difference(first, again) == 0
    changed = copy.deepcopy(first)
    tensor = next(iter(changed["outputs"]["cnn"].values()))
    tensor[0] += 0.25
    assert run_models.largest_difference(first, changed) == pytest.approx(0.25)
    diffs = run_models.differences(changed, first)
    assert diffs["cnn"][:2] == (pytest.approx(0.25), 1) and diffs["autoencoder"][:2] == (0.0, 0)
    del changed["outputs"]["gan"]
    assert run_models.largest_difference(first, changed) == float("inf")


DEMO_OUTPUT = """=== edgepipe demo: summary ===
DEMO-JSON {  "frames_classified": 74,  "frames_sent": 300,  "frames_dropped": 226,  "frame_accuracy": 0.905, \
 "segments": [{"kind": "wrong", "start": 200, "end": 240, "detected": true}, \
 {"kind": "noisy", "start": 450, "end": 490, "detected": true}], "segments_detected": 2, "false_alerts": 0, \
 "anomaly_readings_flagged": 80, "forecasts": 119, "forecast_rmse": 12.4, "errors": 0}
"""


def test_a_slow_demo_passes_but_a_missed_segment_or_an_error_fails() -> None:
    summary = demo_json(DEMO_OUTPUT)
    assert demo_problems(summary) == []
    assert demo_summary(summary).startswith("74 of 300 frames classified (90.5%), 226 skipped as stale")
    assert demo_problems({**summary, "segments_detected": 1}) == ["1 of 2 segments flagged"]
    assert demo_problems({**summary, "errors": 3, "forecast_rmse": float("nan")}) == [
        "3 errors reported", "forecast RMSE nan"]
    with pytest.raises(PiCheckError, match="no summary"):
        demo_json("Traceback (most recent call last):")
