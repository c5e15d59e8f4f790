"""Issue 27: the episode rule's burned-in level `on` is kept like the k-of-n burn-in's plan (`<sensor>.alerts.json`,
`"source": "burn_in"`), so a real agent restarted after its burn-in resumes with the learned `on` instead of
burning in again; a new model file, `cmd/reset`, and a damaged or foreign state file each send it back to a
burn-in, said in words, never a crash. Both burn-ins answer to one switch and one count, and report alike."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from edge.alerts.calibration import plan_alerts
from edge.alerts.episode import EpisodePlan, OnPlan
from edge.alerts.episodic import episode_alerts
from edge.fileio import StateFile
from edge.pipelines.sensor.config import SensorConfig
from edge.pipelines.sensor.rulefiles import PlanFile
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_for_stats, wait_online, write_config
from tests.test_burn_in import PERIOD_S, stream_csv
from tests.test_episode_agent import planned_models
from training.datasets.sensors import lecture_sensor_data

BASE = "edgepipe/test"
STATS = json.loads((ROOT / "schemas" / "stats.json").read_text())
BURN_IN = 2000  # readings: enough surprises (after the day of history) for an extremal placement of `on`
KEYS = f"burn_in_readings = {BURN_IN}\n"
PLANNED_ON = EpisodePlan.for_period(PERIOD_S, 0.1).episode.on  # the plan's own `on` (the conformal bound)


def normal(count: int) -> np.ndarray:
    return lecture_sensor_data(seed=7).train[:count].astype(np.float64)


def run_csv(broker: Broker, tmp_path: Path, name: str, values: np.ndarray, models: Path,
            state: Path) -> tuple[dict, str]:
    """Every reading through a real agent with the state dir `state`: its final stats.quality and its log."""
    stats_file = tmp_path / f"stats-{name}.json"
    csv = stream_csv(tmp_path / f"{name}.csv", values)
    config = write_config(tmp_path / f"{name}.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\nrate = 0\n{KEYS}',
                          stats_file=stats_file, models_dir=models, state_dir=state)
    agent = AgentProcess(config, "--until-done")
    assert agent.wait(240) == 0, agent.output()
    assert "Traceback" not in agent.output(), agent.output()
    stats = json.loads(stats_file.read_text())
    jsonschema.validate(stats, STATS)
    return stats["quality"]["sensor/line1"], agent.output()


def burned_in(broker: Broker, tmp_path: Path) -> tuple[Path, Path, dict]:
    """An agent that burned in `on` on 2,100 normal readings and stopped: its models, state dir and quality."""
    models, state = planned_models(tmp_path, 0.1, episode=True), tmp_path / "state"
    quality, output = run_csv(broker, tmp_path, "first", normal(BURN_IN + 100), models, state)
    assert quality["rule"] == "episode" and quality["burn_in"] is None
    assert f"burn-in done, the episode rule's level on = {quality['episode']['on']:.3g} (extremal" in output, output
    assert quality["episode"]["on_source"] == "extremal" and quality["episode"]["on"] != pytest.approx(PLANNED_ON)
    saved = json.loads((state / "line1.alerts.json").read_text())
    assert (saved["rule"], saved["source"], saved["on_plan"]["on"]) == ("episode", "burn_in", quality["episode"]["on"])
    return models, state, quality


def test_a_restarted_agent_resumes_the_burned_in_on_and_reset_discards_it(broker: Broker, tmp_path: Path) -> None:
    models, state, first = burned_in(broker, tmp_path)
    stats_file = tmp_path / "stats-again.json"
    config = write_config(tmp_path / "again.toml", broker.port, f'[[sensor]]\nname = "line1"\n{KEYS}',
                          stats_file=stats_file, stats_interval=0.2, models_dir=models, state_dir=state)
    collector = Collector(broker.port, [f"{BASE}/cmd/reset/result"])
    agent = AgentProcess(config)
    quality = lambda s: s["quality"]["sensor/line1"]  # noqa: E731
    try:
        wait_online(broker.port)
        assert wait_for_stats(stats_file, lambda s: "sensor/line1" in s["quality"], 30), agent.output()
        resumed = quality(json.loads(stats_file.read_text()))
        assert resumed["burn_in"] is None  # no second burn-in: the learned level holds from the first reading
        assert (resumed["episode"]["on"], resumed["episode"]["on_source"]) == (first["episode"]["on"], "extremal")
        publish(broker.port, f"{BASE}/cmd/reset", [json.dumps({"id": "r1", "sensor": "line1"})])
        assert collector.wait_for(lambda: collector.json("/cmd/reset/result"), 30), agent.output()
        again = {"readings": 0, "needed": BURN_IN}
        assert wait_for_stats(stats_file, lambda s: quality(s)["burn_in"] == again, 10), stats_file.read_text()
        reset = quality(json.loads(stats_file.read_text()))
        assert reset["episode"]["on"] == pytest.approx(PLANNED_ON) and reset["episode"]["on_source"] == "burn_in"
        assert not (state / "line1.alerts.json").exists()
    finally:
        assert agent.stop() == 0
        collector.close()


def float32_models(tmp_path: Path, like: Path) -> Path:
    """`like`'s manifest (its episode plan) on another model file: the committed float32 autoencoder."""
    models = tmp_path / "float32_models"
    models.mkdir()
    manifest = json.loads((like / "manifest.json").read_text())
    other = json.loads((MODELS_DIR / "manifest.json").read_text())["models"]["autoencoder_float32"]
    shutil.copy(MODELS_DIR / other["file"], models / other["file"])
    entry = manifest["models"]["autoencoder"]
    manifest["models"]["autoencoder"] = {**other, "name": "autoencoder", "postprocess": entry["postprocess"]}
    (models / "manifest.json").write_text(json.dumps(manifest))
    return models


def test_a_new_model_or_a_damaged_or_foreign_state_file_burns_in_again(broker: Broker, tmp_path: Path) -> None:
    models, state, first = burned_in(broker, tmp_path)
    saved = (state / "line1.alerts.json").read_text()
    short = normal(50)
    learning = {"readings": 50, "needed": BURN_IN}
    quality, log = run_csv(broker, tmp_path, "retrained", short, float32_models(tmp_path, models), state)
    assert quality["burn_in"] == learning and "saved for another model file" in log
    data = json.loads(saved)
    fields = {k: v for k, v in data.items() if k != "checksum"}
    tampered = {**fields, "on_plan": {**data["on_plan"], "on": 99.0}}
    cases = [("damaged", "unusable (", lambda p: p.write_text(saved[:-20])),
             ("foreign", "not a rule this agent saved", lambda p: StateFile(p, "").save({"threshold": 0.5})),
             ("tampered", "on must lie in", lambda p: StateFile(p, "").save(tampered)),
             # a wrong JSON type anywhere: the field and what was expected, never Python's "list indices must be..."
             ("a list", "(on_plan: expected an object with on, source, peaks, days, level, got a list)",
              lambda p: StateFile(p, "").save({**fields, "on_plan": list(data["on_plan"].values())})),
             ("nested", "(on_plan.peaks: expected an integer, got an object)",
              lambda p: StateFile(p, "").save({**fields, "on_plan": {**data["on_plan"], "peaks": {"n": 5}}})),
             ("missing", "(on_plan: missing)",
              lambda p: StateFile(p, "").save({k: v for k, v in fields.items() if k != "on_plan"}))]
    for name, said, write in cases:
        write(state / "line1.alerts.json")
        quality, log = run_csv(broker, tmp_path, name, short, models, state)
        assert quality["burn_in"] == learning and quality["episode"]["on_source"] == "burn_in", name
        assert said in log and "a burn-in, when it has one, starts again" in log, log
        assert not (state / "line1.alerts.json").exists()  # set aside as .bad-<time>, for a person to look at
    (state / "line1.alerts.json").write_text(saved)  # the file as the burn-in saved it: resumed again
    quality, _ = run_csv(broker, tmp_path, "restored", short, models, state)
    assert quality["burn_in"] is None and quality["episode"]["on"] == first["episode"]["on"]


def test_every_wrong_json_type_in_a_saved_rule_is_refused_in_words(tmp_path: Path) -> None:
    """`<sensor>.alerts.json` with each field (and each list's first item) of either rule replaced by every other
    JSON type, checksum and all (an edit by hand): accepted where the type may be (`period_s` null), else refused
    naming the field, never with Python's own words (`on_plan` a list was "list indices must be integers or
    slices, not str"). Seen failing with the shape check taken out of `OnPlan.from_json` and out of `check_plan`."""
    spec, basis = EpisodePlan.for_period(PERIOD_S, 0.1).episode, {"basis": 1}
    file = PlanFile(tmp_path / "line1.alerts.json")
    file.save_on(OnPlan(2.9, "extremal", 5, 5.9, 2.0), "a" * 64, basis)
    episode = {k: v for k, v in json.loads(file.path.read_text()).items() if k != "checksum"}
    file.save(plan_alerts(np.random.default_rng(0).gamma(2.0, 1e-3, 2000), 1.0, PERIOD_S), "a" * 64)
    k_of_n = {k: v for k, v in json.loads(file.path.read_text()).items() if k != "checksum"}
    python = re.compile(r"Error\b|indices|subscriptable|NoneType|not iterable|argument must be|has no attribute")
    refused = 0
    for data, load in ((episode, lambda: file.load_on("a" * 64, basis, spec)), (k_of_n, lambda: file.load("a" * 64))):
        for path in places(data):
            for wrong in ([1, 2], {"a": 1}, "text", 7, True, None):
                if kind(wrong) == kind(reach(data, path)):
                    continue
                StateFile(file.path, "").save(replaced(data, path, wrong))
                load()
                problem = file.file.problem
                where = f"[{path[-1]}]" if isinstance(path[-1], int) else str(path[-1])
                assert problem is None or (where in problem and not python.search(problem)), (path, wrong, problem)
                refused += problem is not None
    assert refused > 100  # most are refused; `basis`, `source` and a null `period_s` are taken as they are


def test_a_burn_in_shorter_than_the_warm_up_waits_for_judged_readings(broker: Broker, tmp_path: Path) -> None:
    """A user's trial: `burn_in_readings = 60` on a model whose likelihood judges nothing before 288 readings
    "learned" `on` from no surprise at all ("conformal, 0 peaks in 0 days"), saved it, and `edge check` then said
    it was burned in. The burn-in goes on until 30 readings are judged, stats say how many it needs, and check says
    so before the start. Seen failing with the judged count taken out of `burn_in_left` (placed at 60)."""
    models, state = planned_models(tmp_path, 0.1, episode=True), tmp_path / "state"
    keys = "burn_in = true\nburn_in_readings = 60\n"

    def run(name: str, count: int) -> tuple[dict, str]:
        stats_file = tmp_path / f"stats-{name}.json"
        csv = stream_csv(tmp_path / f"{name}.csv", normal(count))
        config = write_config(tmp_path / f"{name}.toml", broker.port,
                              f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\nrate = 0\n{keys}',
                              stats_file=stats_file, models_dir=models, state_dir=state)
        agent = AgentProcess(config, "--until-done")
        assert agent.wait(240) == 0 and "Traceback" not in agent.output(), agent.output()
        return json.loads(stats_file.read_text())["quality"]["sensor/line1"], agent.output()

    quality, output = run("short", 200)
    needed = quality["burn_in"]["needed"]
    assert quality["burn_in"]["readings"] == 200 and needed >= 288 + 30, quality  # warm-up + 30 judged
    assert "burn-in done" not in output and not (state / "line1.alerts.json").exists(), output
    checked = subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(tmp_path / "short.toml"),
                              "--skip-broker"], capture_output=True, text=True, timeout=120)
    assert f"placed on the first {needed} readings, not 60: the likelihood judges none" in checked.stdout, checked
    quality, output = run("longer", needed + 10)
    saved = json.loads((state / "line1.alerts.json").read_text())["on_plan"]
    assert quality["burn_in"] is None and saved["days"] == pytest.approx(30 * PERIOD_S / 86400), saved


def test_the_other_rules_saved_file_is_not_used_and_said(tmp_path: Path, caplog) -> None:
    """A sensor that runs the episode rule and finds a k-of-n rule's file (kept from before it switched rules, or
    forged) burns in and says why; it was replaced without a word. The k-of-n reader skips an episode file
    quietly: every sensor asks it first, so it cannot tell a switch from the normal case. Seen failing with the
    log line taken out."""
    spec = EpisodePlan.for_period(PERIOD_S, 0.1).episode
    file = PlanFile(tmp_path / "line1.alerts.json")
    file.save(plan_alerts(np.random.default_rng(0).gamma(2.0, 1e-3, 2000), 1.0, PERIOD_S), "a" * 64, "burn_in")
    with caplog.at_level("INFO", logger="edge"):
        assert file.load_on("a" * 64, {"basis": 1}, spec) is None
    assert f"ignoring {file.path}: it holds a k-of-n rule, this sensor runs the episode rule" in caplog.text
    assert file.file.problem is None and file.path.exists()  # not damaged: kept until the burn-in replaces it
    file.save_on(OnPlan(2.9, "extremal", 5, 5.9, 2.0), "a" * 64, {"basis": 1})
    caplog.clear()
    with caplog.at_level("INFO", logger="edge"):
        assert file.load("a" * 64) is None
    assert "ignoring" not in caplog.text, caplog.text


def places(data: Any, path: tuple = ()) -> Iterator[tuple]:
    """The path of every field below `data` (of a list, its first item)."""
    items = data.items() if isinstance(data, dict) else [(0, data[0])] if isinstance(data, list) and data else []
    for key, value in items:
        yield (*path, key)
        yield from places(value, (*path, key))


def reach(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


def replaced(data: Any, path: tuple, value: Any) -> Any:
    copy = json.loads(json.dumps(data))
    reach(copy, path[:-1])[path[-1]] = value
    return copy


def kind(value: Any) -> str:
    """A JSON value's type, an integer and a float alike (both numbers)."""
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def test_an_on_is_resumed_only_for_the_basis_it_was_placed_for(tmp_path: Path) -> None:
    """The rate, the plan or the burn-in's length changed: the saved `on` no longer speaks for the rule. A k-of-n
    plan and an `on` share the file without being taken for each other (nor set aside as damaged)."""
    postprocess = {"alerts": {"period_s": PERIOD_S, "episode": EpisodePlan.for_period(PERIOD_S, 0.1).to_json()}}
    run = episode_alerts(postprocess, "m")
    assert run is not None and run.alerts.burn_in == 750
    spec, placed = run.alerts.plan.episode, OnPlan(2.9, "extremal", 5, 5.9, 2.0)
    saved = PlanFile(tmp_path / "line1.alerts.json")
    saved.save_on(placed, "a" * 64, run.basis())
    assert saved.load_on("a" * 64, run.basis(), spec) == placed
    assert saved.load("a" * 64) is None and saved.path.exists()  # not a k-of-n plan, and not damaged
    for other in (episode_alerts(postprocess, "m", false_alarms_per_day=1.0),  # the config's rate
                  episode_alerts(postprocess, "m", burn_in_readings=1500)):  # the burn-in's length
        assert other is not None and saved.load_on("a" * 64, other.basis(), other.alerts.plan.episode) is None
    assert saved.load_on("b" * 64, run.basis(), spec) is None and saved.path.exists()  # another model file


def test_one_switch_and_one_count_for_both_burn_ins() -> None:
    """`burn_in_readings` sets the episode rule's burn-in length as it sets the k-of-n one's; unset, each rule's
    own (the plan's, NAB's 750); `burn_in = false` turns both off."""
    plan = EpisodePlan.for_period(PERIOD_S, 0.1)
    postprocess = {"alerts": {"period_s": PERIOD_S, "episode": plan.to_json()}}
    without = {"alerts": {"period_s": PERIOD_S, "episode": {**plan.to_json(), "burn_in": 0}}}

    def length(cfg: SensorConfig, pp: dict) -> int:
        run = episode_alerts(pp, "m", cfg.burn_in, cfg.burn_in_readings)
        assert run is not None
        return run.alerts.burn_in

    assert length(SensorConfig(name="s"), postprocess) == 750
    assert length(SensorConfig(name="s", burn_in_readings=2880), postprocess) == 2880
    assert length(SensorConfig(name="s", burn_in=False, burn_in_readings=2880), postprocess) == 0
    assert length(SensorConfig(name="s", burn_in_readings=2880), without) == 0  # the plan has none, none asked
    assert length(SensorConfig(name="s", burn_in=True), without) == 750
