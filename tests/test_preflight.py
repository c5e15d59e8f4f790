"""`python -m edge check` fails, with a sentence, on what a valid config can still get wrong; and the agent's
own round trip says `acl_denied` when the broker silently drops its publishes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge.alerts.calibration import plan_alerts
from edge.alerts.episode import OnPlan
from edge.alerts.episodic import episode_alerts
from edge.models.manifest import read_manifest
from edge.pipelines.sensor.rulefiles import PlanFile, ThresholdFile
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.isolation import no_tf_env
from tests.helpers.mqtt import AgentProcess, Broker, write_config
from tests.helpers.security import secure_broker as secure_broker_fixture
from tests.test_burn_in import PERIOD_S
from tests.test_episode_agent import planned_models

secure_broker = secure_broker_fixture  # the TLS + password + ACL mosquitto (tests/helpers/security.py)
DENY_ALL = "user edgepipe-test\ntopic read edgepipe/test/cmd/#\n"  # may read its commands, write nothing


def check(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(config), *extra], env=no_tf_env(),
                          cwd=ROOT, capture_output=True, text=True, timeout=90)


def test_check_passes_with_a_round_trip_through_the_broker(broker: Broker, tmp_path: Path) -> None:
    result = check(write_config(tmp_path / "agent.toml", broker.port, '[[sensor]]\nname = "line1"\n'))
    assert result.returncode == 0, result.stderr
    assert "broker: ok (published on edgepipe/test/probe and read it back)" in result.stdout
    assert "XNNPACK" not in result.stderr  # the runtime's own stderr notice is re-logged at DEBUG, not printed
    assert "ERROR" not in result.stderr, result.stderr  # paho's "Client is not connected" as the probe closed


def test_check_names_a_bad_state_dir_a_missing_column_and_a_missing_camera(broker: Broker, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    csv = tmp_path / "in.csv"
    csv.write_text("time,value\n1,2\n")
    body = (f'[[sensor]]\nname = "s"\nsource = "csv:{csv}:x,y"\n\n'
            f'[[camera]]\nname = "c"\nsource = "folder:{tmp_path / "nowhere"}"\n')
    result = check(write_config(tmp_path / "agent.toml", broker.port, body, state_dir=tmp_path / "file" / "state"))
    assert result.returncode == 2
    assert "state_dir" in result.stderr and "cannot write there" in result.stderr
    assert "columns ['x', 'y'] not in the header ['time', 'value']" in result.stderr
    assert "camera 'c'" in result.stderr and "image folder not found" in result.stderr


def test_check_and_the_agent_say_when_the_acl_drops_every_publish(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(DENY_ALL)
    broker = Broker(tmp_path / "broker", extra_conf=f"acl_file {acl}\n").start()
    try:
        config = write_config(tmp_path / "agent.toml", broker.port, '[[sensor]]\nname = "line1"\n')
        text = config.read_text().replace('[mqtt]\n', '[mqtt]\nusername = "edgepipe-test"\n')
        config.write_text(text)
        stats_file = tmp_path / "stats.json"
        running = tmp_path / "agent-run.toml"
        running.write_text(f'stats_file = "{stats_file}"\n' + text)
        # the agent's own round trip waits out its 10 s while `check` waits out its own (its client id is its
        # own: it never takes the agent's session)
        agent = AgentProcess(running)
        try:
            result = check(config)
            assert result.returncode == 2
            assert "ACL" in result.stderr and "problem:" in result.stderr
            deadline_ok = _wait_file(stats_file, lambda s: s.get("acl") == "denied", 40)
            assert deadline_ok, agent.output()[-2000:]
            stats = json.loads(stats_file.read_text())
            assert stats["healthy"] is False and any("acl_denied" in p for p in stats["problems"])
            assert "acl_denied" in agent.output()
        finally:
            agent.stop()
    finally:
        broker.stop()


def _wait_file(path: Path, predicate, timeout: float) -> bool:
    from tests.helpers.mqtt import wait_for_stats

    return wait_for_stats(path, predicate, timeout)



AS_NOBODY = """
import os, sys
from edge.agent import Agent
from edge.config import ConfigError, load_config
config = load_config(sys.argv[1], {})
os.setgid(65534); os.setuid(65534)  # the service user, after the interpreter and the code are loaded
try:
    Agent(config)
except ConfigError as exc:
    print("REFUSED", exc)
"""


def test_a_state_dir_left_by_another_user_is_refused_not_set_aside(request: Any) -> None:
    """A run as root before the service leaves root's outbox: the service user must be told whose it is,
    and the outbox (its alerts) must stay where it is, not be moved aside as corrupt."""
    import os

    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root, to run the agent as another user (nobody)")
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="edgepipe-perm-"))  # pytest's own folder is root's, mode 0700
    request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(100))
    (state / "outbox.sqlite").chmod(0o600)
    os.chown(state, 65534, 65534)
    tmp_path.chmod(0o755)
    config = write_config(tmp_path / "agent.toml", 1, '[[sensor]]\nname = "line1"\n')
    done = subprocess.run([sys.executable, "-c", AS_NOBODY, str(config)], cwd=ROOT, env=no_tf_env(),
                          capture_output=True, text=True, timeout=120)
    assert "REFUSED" in done.stdout, done.stdout + done.stderr
    assert "outbox.sqlite (owned by root" in done.stdout and "chown -R nobody:" in done.stdout
    assert sorted(p.name for p in state.iterdir()) == ["outbox.sqlite"]  # nothing moved aside, nothing new


def test_check_without_tls_against_a_tls_port_says_so_not_the_acl(secure_broker: Broker, tmp_path: Path) -> None:
    """A plain client on a TLS listener gets no MQTT answer: that is the sentence, not an ACL denial."""
    result = check(write_config(tmp_path / "agent.toml", secure_broker.port, '[[sensor]]\nname = "line1"\n'))
    assert result.returncode == 2
    assert "accepted the TCP connection but gave no MQTT answer" in result.stdout + result.stderr
    assert "a TLS port? set mqtt.tls = true" in result.stdout + result.stderr
    assert "ACL" not in result.stdout


def test_check_says_which_alert_rule_each_sensor_runs_and_whether_it_burns_in_or_resumes(tmp_path: Path) -> None:
    """One line per sensor: the episode rule (the manifest's episode plan) or the k-of-n threshold rule, and
    whether it burns in first (`burn_in`, `burn_in_readings`) or resumes a rule saved in the state dir; a saved
    file it cannot use is named and left where it is (found in a new-user trial: nothing said which rule would
    run). Seen failing with the saved `on` ignored in `rules._episode_rule` and with the preflight call removed
    from `cmd_check`."""
    state = tmp_path / "state"
    entry = read_manifest(MODELS_DIR / "manifest.json").get("autoencoder")
    ThresholdFile(state / "line4.threshold.json").save(0.25)
    plan = plan_alerts(np.random.default_rng(0).gamma(2.0, 1e-3, 2000), 1.0, PERIOD_S)
    PlanFile(state / "line5.alerts.json").save(plan, entry.sha256, source="burn_in")
    committed = check(write_config(tmp_path / "committed.toml", 1, "".join(
        f'[[sensor]]\nname = "{name}"\n{keys}\n' for name, keys in [
            ("line1", ""), ("line2", "burn_in = true\nburn_in_readings = 200"), ("line3", "threshold = 0.5"),
            ("line4", ""), ("line5", "burn_in = true"),
            ("line6", "burn_in = true\nburn_in_readings = 200\ndebounce_k = 2\ndebounce_n = 3")]), state_dir=state),
        "--skip-broker")
    assert committed.returncode == 0, committed.stderr
    said = rule_lines_of(committed.stdout)
    assert said["line1"] == ("alert rule: k-of-n threshold: an alert for every score above 0.001045; the threshold is "
                             "the manifest's (postprocess.threshold); no burn-in")
    assert said["line2"] == ("alert rule: k-of-n threshold; burns in first: its threshold and debounce are learned "
                             "from the first 200 readings (nothing alerts meanwhile; each reading needs a 'ts' "
                             "that is a time, as a rate per day does), then saved in "
                             f"{state}/line2.alerts.json")
    assert said["line6"].startswith("alert rule: k-of-n threshold; burns in first: its threshold (for the config's "
                                    "2-of-3) is learned from the first 200 readings")  # it said "and debounce"
    assert said["line3"].endswith("above 0.5; the threshold is the config's `threshold`; no burn-in")
    assert said["line4"].endswith(f"above 0.25; the threshold is set by cmd/threshold, saved in {state}/"
                                  "line4.threshold.json")
    assert said["line5"].startswith(f"alert rule: k-of-n threshold: an alert when {plan.k} of the last {plan.n} scores")
    assert said["line5"].endswith(f"burned in before, saved in {state}/line5.alerts.json: resumed, no new burn-in "
                                  "(cmd/reset starts one)")

    models = planned_models(tmp_path, 0.1, episode=True)
    postprocess = read_manifest(models / "manifest.json").get("autoencoder").postprocess
    run = episode_alerts(postprocess, "autoencoder")
    assert run is not None and run.alerts.burn_in == 750
    PlanFile(state / "e3.alerts.json").save_on(OnPlan(3.2, "extremal", 5, 5.9, 2.0), entry.sha256, run.basis())
    (state / "e4.alerts.json").write_text('{"rule": "episode", "on_plan": [')
    episodes = check(write_config(tmp_path / "episode.toml", 1, "".join(
        f'[[sensor]]\nname = "{name}"\n{keys}\n' for name, keys in [
            ("e1", ""), ("e2", "burn_in = false"), ("e3", ""), ("e4", ""), ("e5", "debounce_k = 2")]),
        state_dir=state, models_dir=models), "--skip-broker")
    assert episodes.returncode == 0, episodes.stderr
    said = rule_lines_of(episodes.stdout)
    rule = ("alert rule: episode (the manifest's postprocess.alerts.episode: one alert per anomaly episode, "
            "0.1 false episodes a day planned); ")
    planned = f"{run.alerts.plan.episode.on:.3g}"
    assert said["e1"] == (rule + f"burns in first: its level on is placed on the first 750 readings (the plan's on = "
                          f"{planned} meanwhile), then saved in {state}/e1.alerts.json")
    assert said["e2"] == rule + f"no burn-in: its level on = {planned} as planned, from the first reading"
    assert said["e3"] == rule + (f"resumes its level on = 3.2, burned in before and saved in {state}/e3.alerts.json: "
                                 "no new burn-in (cmd/reset starts one)")
    assert said["e4"].startswith(rule + "burns in first")
    assert f"sensor e4: state file {state}/e4.alerts.json unusable (" in episodes.stdout
    assert "; left in place for now (the agent sets it aside when it starts), the saved rule is not used" in (
        episodes.stdout) and (state / "e4.alerts.json").exists()
    assert said["e5"].startswith("alert rule: k-of-n threshold (the manifest's episode plan is not used: a threshold "
                                 "or a debounce is set for this sensor): an alert when 2 of the last")


def test_check_says_a_burn_in_cannot_finish_on_a_csv_without_a_time_column(tmp_path: Path) -> None:
    """A user's trial: a sensor on `csv:data/sensor-stream.csv` (no time column) with `burn_in = true` was "burns
    in first ... check: ok"; the agent then read every row without a rule ("the readings carry no clock") and
    exited 0 with no alert. A k-of-n burn-in plans a rate per day: check names the CSV and what to do, exit 2; the
    same CSV with a timestamp column burns in. Seen failing with the clock check taken out of `_k_of_n_rule`."""
    stamped = tmp_path / "stamped.csv"
    stamped.write_text("timestamp,x,y\n" + "".join(f"2026-01-01T00:{i:02d}:00,0.1,0.2\n" for i in range(10)))
    keys = "burn_in = true\nburn_in_readings = 100\n"
    result = check(write_config(tmp_path / "agent.toml", 1, (
        f'[[sensor]]\nname = "plain"\nsource = "csv:{ROOT / "data" / "sensor-stream.csv"}"\n{keys}\n'
        f'[[sensor]]\nname = "stamped"\nsource = "csv:{stamped}"\n{keys}'), state_dir=tmp_path / "state"),
        "--skip-broker")
    assert result.returncode == 2, result.stdout
    assert ("problem: sensor 'plain': burns in, but " + str(ROOT / "data" / "sensor-stream.csv") + " has no time "
            "column (header ['step', 'x', 'y', 'kind'])") in result.stderr, result.stderr
    assert "or set `threshold` or `burn_in = false`" in result.stderr and "check: 1 problem(s)" in result.stdout
    assert rule_lines_of(result.stdout)["stamped"].startswith("alert rule: k-of-n threshold; burns in first")


def rule_lines_of(stdout: str) -> dict[str, str]:
    """`edge check`'s alert rule line of each sensor, by name."""
    return {line.split(":", 1)[0].removeprefix("sensor "): line.split(": ", 1)[1]
            for line in stdout.splitlines() if line.startswith("sensor ") and ": alert rule: " in line}


def test_a_file_gone_while_the_state_dir_is_checked_is_not_another_users(tmp_path: Path) -> None:
    """`edge check` and the agent started together on one state dir: the agent saw check's probe file listed, gone
    by the time it asked for access, and refused to start ("owned by another user", a red run). Files come and go
    here (probes, atomic replaces) while a check lists the folder; only one that is still there counts."""
    import threading

    from edge.preflight import check_state_dir

    stop = threading.Event()

    def churn() -> None:  # another process's probes: created and removed as fast as it can
        while not stop.is_set():
            for i in range(50):
                probe = tmp_path / f".edgepipe-check-{i:08x}"
                probe.write_bytes(b"ok")
                probe.unlink()

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        refusals = [r for r in (check_state_dir(tmp_path) for _ in range(3000)) if r]
    finally:
        stop.set()
        worker.join()
    assert refusals == [], refusals[:1]


def test_a_config_error_is_said_once(tmp_path: Path) -> None:
    """`edge check` / `edge run` on a config with a wrong value printed the error twice (a log line, then the
    same words after `edgepipe:`), and under systemd both reached the journal. Seen failing with the plain
    print put back (two lines)."""
    config = tmp_path / "bad.toml"
    config.write_text('[[sensor]]\nname = "s"\nrate = -1\n')
    for command in ("check", "run"):
        done = subprocess.run([sys.executable, "-m", "edge", command, "--config", str(config)],
                              capture_output=True, text=True, timeout=120)
        said = [line for line in (done.stdout + done.stderr).splitlines() if "sensor[0].rate" in line]
        assert done.returncode == 2 and len(said) == 1, (command, done.stdout, done.stderr)
        assert "expected a number >= 0, got -1.0" in said[0]
