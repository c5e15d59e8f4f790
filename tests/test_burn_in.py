"""Issue 27, Build 4: the rule learned on the device. An agent started with no plan learns one from the live
stream's first readings (NAB's probationary period), then holds its rate on a month of normal readings;
its slow re-calibration learns nothing from an alerting period (an injected step fault)."""

from __future__ import annotations

import datetime
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from edge.alerts.burnin import Recalibrator
from edge.alerts.calibration import plan_alerts
from edge.alerts.ledger import AlertLedger
from edge.alerts.plan import AlertSettings, alert_summary, check_plan, resolve
from edge.alerts.support import support
from edge.fileio import CHECKSUM, checksum
from edge.numbers import FLOAT32_MAX
from edge.pipelines.sensor.pipeline import SensorConfig
from edge.pipelines.sensor.rulefiles import ThresholdFile
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_for_stats, wait_online, write_config
from training.datasets.sensors import lecture_sensor_data

BASE = "edgepipe/test"
PERIOD_S = 300.0  # a reading every 5 minutes, the time stamps fast-forwarded
START = datetime.datetime(2026, 1, 5)
STATS = json.loads((ROOT / "schemas" / "stats.json").read_text())


def stream_csv(path: Path, values: np.ndarray) -> Path:
    stamps = [(START + datetime.timedelta(seconds=PERIOD_S * i)).isoformat() for i in range(len(values))]
    path.write_text("timestamp,x,y\n" + "".join(f"{t},{x!r},{y!r}\n" for t, (x, y) in zip(stamps, values.tolist())))
    return path


def no_rule_models(tmp_path: Path) -> Path:
    """The committed autoencoder with neither a plan nor a threshold in its manifest entry: no rule at all."""
    models = tmp_path / "models"
    models.mkdir()
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    entry = manifest["models"]["autoencoder"]
    shutil.copy(MODELS_DIR / entry["file"], models / entry["file"])
    entry["postprocess"] = {**{k: v for k, v in entry["postprocess"].items() if k != "alerts"}, "threshold": None}
    manifest["models"] = {"autoencoder": entry}
    (models / "manifest.json").write_text(json.dumps(manifest))
    return models


def run_agent(broker: Broker, tmp_path: Path, values: np.ndarray, keys: str,
              models: Path | None = None) -> tuple[dict, list[dict]]:
    """Every reading through a real agent on the committed autoencoder; the final stats and the anomaly messages."""
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{stream_csv(tmp_path / "s.csv", values)}"\n'
                          f"rate = 0\n{keys}", stats_file=stats_file, models_dir=models)
    collector = Collector(broker.port, [f"{BASE}/sensors/line1/anomaly"])
    try:
        agent = AgentProcess(config, "--until-done")
        assert agent.wait(240) == 0, agent.output()
        stats = json.loads(stats_file.read_text())
        jsonschema.validate(stats, STATS)
        quality = stats["quality"]["sensor/line1"]
        collector.wait_for(lambda: len(collector.matching("/anomaly")) >= quality["alert_episodes"], 10)
    finally:
        collector.close()
    return quality, [json.loads(p) for p in collector.matching("/anomaly")]


@pytest.mark.slow
def test_burn_in_learns_the_rule_then_holds_its_rate_for_a_month(broker: Broker, tmp_path: Path) -> None:
    month = lecture_sensor_data(seed=7).train[:30 * 288].astype(np.float64)
    quality, alerts = run_agent(broker, tmp_path, month,
                                "burn_in = true\nburn_in_readings = 2880\nfalse_alarms_per_day = 0.5\n")
    assert quality["threshold_source"] == "burn_in" and quality["threshold"] > 0
    assert (quality["debounce_k"], quality["debounce_n"]) == (2, 3)  # from the stream's own 5-minute period
    learning = quality["device_learning"]
    assert quality["burn_in"] is None and learning["recalibrations"] >= 1 and learning["error"] is None
    assert quality["days"] == pytest.approx((len(month) - 2880 - 1) * PERIOD_S / 86400, rel=0.01)
    # 20 days after the burn-in: false episodes per day within 2x of the plan
    assert quality["observed_alerts_per_day"] <= 2 * 0.5 and not quality["plan_contradicted"]
    evidence = quality["evidence"]  # what the rule in force rests on: the last pool, 10+ days of quiet readings
    assert evidence["calibration_days"] > 9.9 and evidence["warnings"] == []
    assert all(a["seq"] > 2880 for a in alerts)  # nothing alerts while the burn-in learns
    assert all(a["rule"]["threshold_source"] == "burn_in" for a in alerts)


@pytest.mark.slow
def test_recalibration_learns_nothing_from_an_alerting_period(broker: Broker, tmp_path: Path) -> None:
    values = lecture_sensor_data(seed=7).train[:3000].astype(np.float64)
    values[1500:2400, 1] += 0.2  # a step fault three re-calibration spans long
    quality, alerts = run_agent(broker, tmp_path, values, "burn_in_readings = 300\nfalse_alarms_per_day = 0.5\n",
                                no_rule_models(tmp_path))
    assert quality["threshold_source"] == "burn_in"  # no rule in the manifest nor the config: burned in
    first = next(a["threshold"] for a in alerts)
    in_fault = {a["seq"] for a in alerts if a["is_anomaly"] and 1500 <= a["seq"] < 2400}
    assert len(in_fault) >= 0.95 * 900  # the fault alerts to its end: the re-calibrations did not learn it
    assert quality["threshold"] <= 1.5 * first
    learning = quality["device_learning"]
    assert learning["recalibrations"] >= 8 and learning["held_back"] >= 900


def daily_flags(planned: float, per_day: int, days: int = 4) -> list[bool]:
    """`plan_contradicted` at the end of each day of a stream with `per_day` 1-reading episodes a day."""
    settings = AlertSettings(0.5, 1, 1, "manifest", planned * PERIOD_S / 86400, PERIOD_S, planned)
    ledger = AlertLedger(settings.expected_active_rate or 0.0, PERIOD_S)
    flags = []
    for i in range(days * 288):
        ledger.update(i % 288 < 2 * per_day and i % 2 == 0, i * PERIOD_S)
        if i % 288 == 287:
            flags.append(alert_summary(settings, ledger)["plan_contradicted"])
    return flags


def test_a_plan_the_stream_contradicts_is_flagged() -> None:
    """Flagged only on two days of readings or more (the second day ends 1.997 days after the first reading),
    beyond chance, and more than twice the plan."""
    assert daily_flags(0.1, 3) == [False, False, True, True]  # 30x the plan
    assert daily_flags(10.0, 15, 6) == [False] * 6  # 1.5x: beyond chance after days, but within 2x
    assert daily_flags(0.1, 0) == [False] * 4


def test_an_agent_burning_in_says_so_and_alerts_nothing(broker: Broker, tmp_path: Path) -> None:
    """Half-way through the burn-in: no threshold yet, the progress in stats.quality, nothing alerts even on
    readings far off the line. The debounce is null too (it said 1-of-1 while the burn-in learns 2-of-3: a user's
    trial; seen failing with the debounce given as the placeholder's)."""
    values = lecture_sensor_data(seed=7).train[:60].astype(np.float64)
    values[40:] = [0.9, -0.9]  # off the line: the committed threshold would flag every one
    quality, alerts = run_agent(broker, tmp_path, values, "burn_in = true\nburn_in_readings = 120\n")
    assert quality["threshold_source"] == "burn_in" and quality["threshold"] is None
    assert quality["burn_in"] == {"readings": 60, "needed": 120}
    assert (quality["debounce_k"], quality["debounce_n"]) == (None, None)  # not 1-of-1: the burn-in learns its own
    assert alerts == [] and quality["alert_episodes"] == 0


def test_which_rule_a_model_without_one_runs() -> None:
    """No plan and no threshold in the manifest: the burn-in; a command or the config's threshold replace it;
    `burn_in = false` is refused with what to do."""
    none = {"threshold": None}
    assert resolve(SensorConfig(name="s"), none, "m", None, None).source == "burn_in"
    commanded = resolve(SensorConfig(name="s"), none, "m", 0.5, None)
    assert (commanded.source, commanded.threshold) == ("command", 0.5)
    configured = resolve(SensorConfig(name="s", threshold=0.2), none, "m", None, None)
    assert (configured.source, configured.threshold) == ("config", 0.2)
    with pytest.raises(ValueError, match="set the sensor's `threshold`"):
        resolve(SensorConfig(name="s", burn_in=False), none, "m", None, None)
    forced = resolve(SensorConfig(name="s", burn_in=True), {"threshold": 0.01}, "m", None, None)
    assert forced.source == "burn_in"  # burn_in = true: the manifest's threshold is not used


def test_reset_starts_a_new_burn_in_and_calibrate_ends_one(broker: Broker, tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port,
                          '[[sensor]]\nname = "line1"\nburn_in = true\nburn_in_readings = 30\n',
                          stats_file=stats_file, stats_interval=0.2)
    collector = Collector(broker.port, [f"{BASE}/cmd/reset/result", f"{BASE}/cmd/calibrate/result"])
    agent = AgentProcess(config)
    values = lecture_sensor_data(seed=7).train[:40].tolist()
    stamps = [(START + datetime.timedelta(seconds=PERIOD_S * i)).isoformat() for i in range(80)]
    try:
        wait_online(broker.port)
        publish(broker.port, f"{BASE}/sensors/line1/reading",
                [json.dumps({"ts": t, "values": v}) for t, v in zip(stamps, values)])
        learned = wait_for_stats(stats_file, lambda s: s["quality"]["sensor/line1"]["threshold"] is not None, 30)
        assert learned, agent.output()
        assert (tmp_path / "state" / "line1.alerts.json").exists()  # persisted like a calibration
        publish(broker.port, f"{BASE}/cmd/reset", [json.dumps({"id": "r1", "sensor": "line1"})])
        assert collector.wait_for(lambda: collector.json("/cmd/reset/result"), 30), agent.output()
        assert not (tmp_path / "state" / "line1.alerts.json").exists()
        # a cmd/calibrate during the new burn-in takes the readings and ends it
        publish(broker.port, f"{BASE}/cmd/calibrate", [json.dumps({"id": "c1", "sensor": "line1", "readings": 30})])
        assert collector.wait_for(lambda: collector.json("/cmd/calibrate/result"), 30), agent.output()
        publish(broker.port, f"{BASE}/sensors/line1/reading",
                [json.dumps({"ts": t, "values": v}) for t, v in zip(stamps[40:], values)][:30])  # new readings, new ts
        assert collector.wait_for(lambda: len(collector.json("/cmd/calibrate/result")) == 2, 30), agent.output()
    finally:
        assert agent.stop() == 0
        collector.close()
    [result] = collector.json("/cmd/reset/result")
    jsonschema.validate(result, json.loads((ROOT / "schemas" / "command_result.json").read_text()))
    assert result["ok"] and result["threshold"] is None and result["threshold_source"] == "burn_in"
    done = collector.json("/cmd/calibrate/result")[-1]
    assert done["state"] == "done" and done["threshold_source"] == "calibrated", done


SAVED_KEYS = "burn_in = true\nburn_in_readings = 100\n"


def run_saved(broker: Broker, tmp_path: Path, name: str, count: int, keys: str = SAVED_KEYS) -> tuple[dict, str]:
    """`count` normal readings through a real agent burning in over 100 readings, with the state dir
    `tmp_path/state` (what an earlier run saved there): its final stats.quality, checked against the schema
    (the stats file is the payload it published), and its log."""
    stats_file = tmp_path / f"stats-{name}.json"
    csv = stream_csv(tmp_path / f"{name}.csv", lecture_sensor_data(seed=7).train[:count].astype(np.float64))
    config = write_config(tmp_path / f"{name}.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\nrate = 0\n{keys}',
                          stats_file=stats_file)
    collector = Collector(broker.port, [f"{BASE}/stats"])
    try:
        agent = AgentProcess(config, "--until-done")
        assert agent.wait(120) == 0, agent.output()
        assert "Traceback" not in agent.output(), agent.output()
        assert collector.wait_for(lambda: collector.json("/stats"), 10), agent.output()  # stats reached the broker
    finally:
        collector.close()
    stats = json.loads(stats_file.read_text())
    jsonschema.validate(stats, STATS)
    return stats["quality"]["sensor/line1"], agent.output()


def edited(saved: dict, change: Callable[[dict], None]) -> str:
    """The saved rule edited as a person would, its checksum recomputed as `edge.fileio` checks it."""
    fields = json.loads(json.dumps({k: v for k, v in saved.items() if k != CHECKSUM}))
    change(fields)
    return json.dumps({**fields, CHECKSUM: checksum(fields)})


def setter(*path: Any, value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value
    return change


#: (field edited, value, what the refusal says): each found accepted (or crashing the agent) in a new-user trial
OUT_OF_RANGE = [
    (("plan", "threshold"), 1e308, "plan.threshold: expected a number <= 3.40282e+38"),
    (("plan", "false_alarms_per_day"), 0, "plan.false_alarms_per_day: expected a finite number > 0"),
    (("plan", "false_alarms_per_day"), -1, "plan.false_alarms_per_day: expected a finite number > 0"),
    (("plan", "false_alarms_per_day"), None, "plan.false_alarms_per_day: expected a finite number > 0, got None"),
    (("plan", "threshold"), -1, "plan.threshold must be a finite number > 0, got -1"),
    (("plan", "period_s"), 1e-300, "plan.period_s: expected seconds from 1e-06 to 1e+09 or null, got 1e-300"),
    (("plan", "calibration", "count"), -1, "plan.calibration.count: expected at least the"),
    (("plan", "calibration", "count"), 0, "plan.calibration.count: expected at least the"),
    (("plan", "calibration", "exceed", 0), -1, "plan.calibration.exceed: expected one count per value"),
    (("plan", "calibration", "tail", "shape"), 1e308, "plan.calibration.tail: expected a finite start"),
    (("source",), 5, "source: expected one of calibrated, burn_in, got 5"),
    (("source",), None, "source: expected one of calibrated, burn_in, got None"),
    (("source",), "bogus", "source: expected one of calibrated, burn_in, got 'bogus'"),
]


def test_a_saved_rule_out_of_range_is_set_aside_in_words_and_burns_in_again(broker: Broker, tmp_path: Path) -> None:
    """The rule a real burn-in saved, edited field by field out of its range (checksum recomputed): each is refused
    naming the field, set aside as `.bad-<time>`, and the agent burns in again and keeps publishing stats -- never
    resumed (a threshold of 1e308 overflowed stats' evidence and silenced every stats publish; a rate of null
    failed every re-calibration), never a crash (a rate of 0 was a ZeroDivisionError at every start). `edge
    check` says the same before the agent moves anything. Seen failing with `_check_rates` and
    `_check_calibration` taken out of `check_plan` (resumed: `burn_in` null; the 0 rate: ZeroDivisionError in
    `support`), with the threshold's float32 bound taken out (resumed), and with the `source` check taken out;
    `edge check` says each once (with `quiet` taken out of the read-only StateFile: twice, log and line)."""
    quality, _ = run_saved(broker, tmp_path, "first", 105)
    assert quality["threshold_source"] == "burn_in" and quality["burn_in"] is None
    file = tmp_path / "state" / "line1.alerts.json"
    saved = json.loads(file.read_text())
    assert saved["source"] == "burn_in" and saved["plan"]["calibration"]["tail"] is not None
    again = {"readings": 10, "needed": 100}
    for path, value, said in OUT_OF_RANGE:
        file.write_text(edited(saved, setter(*path, value=value)))
        checked = subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(tmp_path / "first.toml"),
                                  "--skip-broker"], capture_output=True, text=True, timeout=120)
        assert said in checked.stdout and "left in place for now" in checked.stdout, (said, checked.stdout)
        assert (checked.stdout + checked.stderr).count("unusable") == 1, checked.stderr  # said once, not logged too
        assert "retrain the model" not in checked.stdout, checked.stdout  # the manifest's advice, not a state file's
        assert "resumed" not in checked.stdout, checked.stdout
        quality, log = run_saved(broker, tmp_path, "again", 10)
        assert quality["burn_in"] == again and quality["threshold"] is None, (path, value, quality)
        assert said in log and "a burn-in, when it has one, starts again" in log, log
        assert not file.exists() and list(file.parent.glob("line1.alerts.json.bad-*")), path
    file.write_text(edited(saved, lambda data: None))  # the file as saved: resumed again
    quality, _ = run_saved(broker, tmp_path, "restored", 10)
    assert quality["burn_in"] is None and quality["threshold"] == saved["plan"]["threshold"]


def test_a_burned_in_rule_follows_the_config_after_a_restart(broker: Broker, tmp_path: Path) -> None:
    """A k-of-n rule burned in and saved, then the config edited: a new `false_alarms_per_day` re-plans it from its
    own calibration table at the next start (no new burn-in, nothing lost), a new `burn_in_readings` burns in
    again over the new length, as the episode rule does; `edge check` says the same. Both were silently ignored:
    the saved rule resumed at its old rate and length (a user's trial). Seen failing with `saved_rule`'s re-plan
    taken out (false_alarms_per_day stayed 0.1) and with the length check taken out of `saved_rule` (resumed)."""
    first, _ = run_saved(broker, tmp_path, "first", 105)
    assert first["false_alarms_per_day"] == 0.1 and first["burn_in"] is None  # the default rate, burned in
    looser = SAVED_KEYS + "false_alarms_per_day = 20\n"
    quality, log = run_saved(broker, tmp_path, "looser", 10, looser)
    assert quality["burn_in"] is None and quality["threshold_source"] == "burn_in", quality  # resumed at once
    assert quality["false_alarms_per_day"] == 20 and quality["threshold"] < first["threshold"], quality
    assert quality["expected_false_alerts_per_day"] > first["expected_false_alerts_per_day"]
    assert "re-planned for 20/day (the config's)" in log, log
    longer = looser.replace("burn_in_readings = 100", "burn_in_readings = 200")
    (tmp_path / "check.toml").write_text((tmp_path / "looser.toml").read_text().replace("burn_in_readings = 100",
                                                                                   "burn_in_readings = 200"))
    checked = subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(tmp_path / "check.toml"),
                              "--skip-broker"], capture_output=True, text=True, timeout=120)
    assert "burns in first" in checked.stdout and "200 readings" in checked.stdout, checked.stdout
    quality, log = run_saved(broker, tmp_path, "longer", 10, longer)
    assert quality["burn_in"] == {"readings": 10, "needed": 200} and quality["threshold"] is None, quality
    assert "burned in on 100 readings and the burn-in now takes 200 (burn_in_readings)" in log, log


def test_a_burned_in_rule_is_used_only_while_the_config_burns_in(broker: Broker, tmp_path: Path) -> None:
    """A rule a burn-in saved, then the config turned to another rule (a user's trial found each silently
    overridden by the saved rule): `burn_in = false` runs the manifest's plan, a configured `threshold` is the
    rule, and a new debounce burns in again -- with no "burns in again" warning where nothing burns in. Seen
    failing with the `burning` test taken out of `saved_rule` (the saved rule resumed: source burn_in, 3-of-5)
    and with the debounce comparison taken out (resumed)."""
    run_saved(broker, tmp_path, "first", 105)
    quality, log = run_saved(broker, tmp_path, "off", 10, "burn_in = false\n")
    assert quality["threshold_source"] == "manifest" and quality["burn_in"] is None, quality
    assert "does not burn in now" in log and "burns in again" not in log, log
    quality, log = run_saved(broker, tmp_path, "fixed", 10, "threshold = 0.5\n")
    assert (quality["threshold_source"], quality["threshold"]) == ("config", 0.5), quality
    assert "burns in again" not in log, log
    assert (tmp_path / "state" / "line1.alerts.json").exists()  # kept for when the sensor burns in again
    quality, _ = run_saved(broker, tmp_path, "resumed", 10)
    assert quality["threshold_source"] == "burn_in" and quality["burn_in"] is None, quality
    quality, log = run_saved(broker, tmp_path, "debounce", 10, SAVED_KEYS + "debounce_k = 1\ndebounce_n = 1\n")
    assert quality["burn_in"] == {"readings": 10, "needed": 100} and quality["threshold"] is None, quality
    assert "the config now asks debounce 1-of-1; it burns in again" in log, log


def test_a_rule_the_config_contradicts_or_a_manifest_threshold_out_of_range_is_refused_in_words() -> None:
    """`burn_in = true` with a fixed `threshold` (the threshold was ignored), a rate beyond `cmd/calibrate`'s
    bound (1e308 was taken), a manifest threshold of -1, 0 or a string (the sensor burned in silently, as if the
    model gave no rule), each refused naming what to do; the advice names `burn_in = true` when the config does
    not set `burn_in = false`. Seen failing with each check taken out (accepted; burned in)."""
    from edge.config import parse_config
    from edge.fields import ConfigError

    def sensor(**keys: Any) -> SensorConfig:
        return parse_config({"sensor": [{"name": "line1", **keys}]}).sensor[0]

    with pytest.raises(ConfigError, match="threshold: a fixed threshold and burn_in = true contradict each other"):
        sensor(burn_in=True, threshold=0.5)
    with pytest.raises(ConfigError, match="false_alarms_per_day"):
        sensor(false_alarms_per_day=1e308)
    assert sensor(false_alarms_per_day=1e6).false_alarms_per_day == 1e6
    for bad in (-1, 0, "0.001"):
        with pytest.raises(ValueError, match=r"postprocess.threshold must be a .*set `burn_in = true`"):
            resolve(sensor(), {"threshold": bad}, "autoencoder", None, None)
    with pytest.raises(ValueError, match="drop `burn_in = false`"):
        resolve(sensor(burn_in=False), {"threshold": None}, "autoencoder", None, None)
    assert resolve(sensor(), {"threshold": None}, "autoencoder", None, None).source == "burn_in"  # no rule at all


def test_a_restart_never_re_plans_on_fewer_readings_than_the_rule_rests_on(broker: Broker, tmp_path: Path) -> None:
    """After a restart the re-calibration pool starts empty: the first re-plan put a rule resting on ~800 quiet
    readings onto 100 (a user's trial: 1,328 -> 498, the evidence going backwards at every restart). It now waits
    for as many readings as the plan in force rests on (at most a full pool). Seen failing with `rests_on` left
    at 0 (a re-calibration on 100 readings) and with it the calibration's count of statistics, not of readings
    (627 -> 626: a verifying user's run)."""
    first, _ = run_saved(broker, tmp_path, "first", 1000)
    rests_on = first["evidence"]["calibration_readings"]
    assert rests_on > 500 and first["device_learning"]["recalibrations"] >= 5, first
    quality, _ = run_saved(broker, tmp_path, "again", 400)
    assert quality["device_learning"]["recalibrations"] == 0, quality["device_learning"]
    assert quality["evidence"]["calibration_readings"] == rests_on, quality["evidence"]
    quality, _ = run_saved(broker, tmp_path, "longer", rests_on + 60)  # the pool holds as many: one re-plan, on
    assert quality["device_learning"]["recalibrations"] == 1, quality["device_learning"]  # not one reading fewer
    assert quality["evidence"]["calibration_readings"] >= rests_on, (rests_on, quality["evidence"])


def test_a_short_burn_in_is_said_once_with_what_to_do_on_the_device(broker: Broker, tmp_path: Path) -> None:
    """A burn-in of 100 readings (a third of a day) for 0.1 false alarms/day: the warning is logged once, not at
    both the burn-in's end and the re-plan after it, and it tells the device's user what the device can do (a
    longer burn-in, a looser rate), not to set `burn_in = true` on a sensor burning in. Seen failing with
    `SaidOnce.say` logging every time (twice) and with `placed_by` not passed (the trainer's advice)."""
    _, log = run_saved(broker, tmp_path, "first", 400)
    said = [line for line in log.splitlines() if "calibration too short: 99 normal readings" in line]
    assert len(said) == 1, said  # the re-calibrations after it, on more readings, say their own figures
    assert "burn_in_readings" in said[0] and "burn_in = true" not in said[0], said


def test_a_figure_that_overflows_goes_out_as_null_and_stats_keep_flowing(broker: Broker, tmp_path: Path) -> None:
    """A saved rule inside every range whose threshold (3e38, float32's edge) over its largest calibration score
    (1e-300) overflows to infinity: `stats.quality.evidence.threshold_over_max_seen` is sent as null, and stats
    are published (they failed with "Out of range float values are not JSON compliant" at every interval, and
    `--until-done` exited 1). Seen failing with `figures=True` taken out of `messages.stats` (exit 1)."""
    run_saved(broker, tmp_path, "first", 105)
    file = tmp_path / "state" / "line1.alerts.json"
    saved = json.loads(file.read_text())

    def overflowing(data: dict) -> None:
        calibration = data["plan"]["calibration"]
        top = max(calibration["values"])
        calibration["values"] = [v / top * 1e-300 for v in calibration["values"]]
        data["plan"]["threshold"] = 3e38

    file.write_text(edited(saved, overflowing))
    quality, log = run_saved(broker, tmp_path, "overflow", 10)
    assert quality["threshold"] == 3e38 and quality["burn_in"] is None  # resumed: the rule is within range
    assert quality["evidence"]["threshold_over_max_seen"] is None, quality["evidence"]
    assert "not JSON compliant" not in log


def test_support_never_divides_by_a_rate_of_zero() -> None:
    """`support` is given whatever rate a plan or a config holds: 0, below 0, infinite or NaN says no warning
    about the span, never a ZeroDivisionError. Seen failing with the rate check taken out of `support`."""
    plan = plan_alerts(lecture_sensor_data(seed=7).train[:300, 0] ** 2, 0.5, PERIOD_S)
    for asked in (0, 0.0, -1.0, math.inf, math.nan):
        found = support(plan, asked)
        assert not any("too short" in w for w in found.warnings), (asked, found.warnings)
    assert any("too short" in w for w in support(plan, 1e-3).warnings)  # a real rate is still checked


def test_every_plan_the_device_or_the_trainer_makes_is_within_range() -> None:
    """The range checks refuse no plan this code makes: a burn-in's or a calibration's (`plan_alerts`, with and
    without a clock, a floor), a re-calibration's clipped step (`method: bounded`); an unknown method is refused.
    Seen failing with "bounded" left out of `plan.METHODS` (a re-calibrated rule was set aside at every start)."""
    scores = lecture_sensor_data(seed=7).train[:3000, 0] ** 2
    made = [plan_alerts(scores, 0.5, PERIOD_S), plan_alerts(scores, alpha=1e-3), plan_alerts(scores[:50], 0.1, 60.0),
            plan_alerts(np.zeros(300), 0.5, PERIOD_S, floor=1e-9)]
    recalibrator = Recalibrator(every=300, guard=12)
    for i, score in enumerate(scores[:400] * 100):  # a pool far above the plan: the step is clipped
        recalibrator.add(float(score), i * PERIOD_S, False)
    made.append(recalibrator.replan(made[0]))
    assert made[-1].method == "bounded" and made[-2].method == "floor"
    for plan in made:
        assert check_plan(plan.to_json(), "plan") == plan
    with pytest.raises(ValueError, match="plan.method: expected one of conformal, tail, max, floor, bounded"):
        check_plan({**made[0].to_json(), "method": "guess"}, "plan")


def test_a_saved_threshold_beyond_float32_is_set_aside_in_words(tmp_path: Path) -> None:
    """`<sensor>.threshold.json` (what `cmd/threshold` saved) edited beyond float32, checksum and all: refused as
    `cmd/threshold` refuses it, set aside as `.bad-<time>`, the config's or the manifest's threshold applies;
    float32's largest is taken. Seen failing with `within_float32` taken out of `ThresholdFile.load`."""
    file = ThresholdFile(tmp_path / "line1.threshold.json")
    file.save(FLOAT32_MAX)
    assert file.load() == FLOAT32_MAX
    file.save(1e308)
    assert file.load() is None and not file.path.exists() and list(tmp_path.glob("line1.threshold.json.bad-*"))
    assert file.file.problem is not None and "threshold: expected a number <= 3.40282e+38" in file.file.problem


def test_a_threshold_beyond_float32_in_the_config_or_the_manifest_is_refused_in_words(tmp_path: Path) -> None:
    """A config's `threshold` or a manifest's `postprocess.threshold` beyond float32 (1e39) gave a detector that
    can never alert and stats figures that overflow, silently; `cmd/threshold` and a saved threshold were bounded
    already. Now both are refused naming the key, float32's largest taken. Seen failing with `le=FLOAT32_MAX`
    taken out of `SensorConfig.threshold` (accepted) and with `within_float32` taken out of `resolve` (1e39 in
    force)."""
    from edge.config import parse_config
    from edge.fields import ConfigError

    def sensor(**keys: Any) -> SensorConfig:
        return parse_config({"sensor": [{"name": "line1", **keys}]}).sensor[0]

    assert sensor(threshold=FLOAT32_MAX).threshold == FLOAT32_MAX
    with pytest.raises(ConfigError, match=r"threshold.*3\.40282e\+38"):
        sensor(threshold=1e39)
    postprocess = {"threshold": 1e39}
    with pytest.raises(ValueError, match=r"postprocess.threshold: expected a number <= 3\.40282e\+38"):
        resolve(sensor(), postprocess, "autoencoder", None, None)
    assert resolve(sensor(), {"threshold": FLOAT32_MAX}, "autoencoder", None, None).threshold == FLOAT32_MAX


def test_a_burn_in_that_cannot_finish_says_so_once(broker: Broker, tmp_path: Path) -> None:
    """Readings without a clock: the k-of-n burn-in cannot plan a rate per day and starts over at every
    `burn_in_readings`; the warning was logged each time (10 times in 1,000 readings, a user's trial). Now once,
    and `device_learning.error` keeps saying it, and `stats` is not `healthy` (a deaf sensor). Seen failing with
    the `self.failed != str(exc)` test taken out (six warnings) and with `rule_problem` out of `edge.health`."""
    csv = tmp_path / "no-clock.csv"
    values = lecture_sensor_data(seed=7).train[:200].astype(np.float64)
    csv.write_text("x,y\n" + "".join(f"{x!r},{y!r}\n" for x, y in values.tolist()))
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\nrate = 0\nburn_in = true\n'
                          "burn_in_readings = 30\n", stats_file=stats_file)
    agent = AgentProcess(config, "--until-done")
    assert agent.wait(120) == 0, agent.output()
    said = [line for line in agent.output().splitlines() if "the readings carry no clock" in line]
    assert len(said) == 1 and "said once" in said[0], said
    stats = json.loads(stats_file.read_text())
    learning = stats["quality"]["sensor/line1"]["device_learning"]
    assert "carry no clock" in learning["error"], learning
    # running, yet deaf: not "healthy" (it was true, problems []: a user's trial)
    assert not stats["healthy"] and any("sensor/line1: runs but cannot alert: its burn-in cannot learn a rule"
                                        in p for p in stats["problems"]), stats["problems"]


def test_a_deaf_thresholds_ratio_is_written_in_three_figures() -> None:
    """A threshold of 3.4e38 over a largest normal score of 1e-3 was '340282346638528859811704183484516925440.0x'.
    Seen failing with the ratio written `.1f`."""
    plan = plan_alerts(np.random.default_rng(0).random(2000) * 1e-3, 0.1, 300.0)
    [warning] = [w for w in support(plan, threshold=3.4e38).warnings if "largest normal score" in w]
    assert " is 3.43e+41x the largest normal score seen" in warning, warning
