"""Issue 27: the episode rule is the rule the agent runs. A manifest with `postprocess.alerts.episode` makes a
real agent (real mosquitto, real TFLite) raise one alert per episode, at its onset, and hold its planned rate
on a month of normal readings; a manifest written before it (no `episode`) still runs the k-of-n rule."""

from __future__ import annotations

import datetime
import json
import re
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.alerts.calibration import plan_alerts
from edge.alerts.episode import EpisodePlan
from edge.alerts.episodic import episode_alerts
from edge.alerts.plan import burns_in
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.pipelines.sensor.messages import describe
from edge.pipelines.sensor.pipeline import SensorConfig
from edge.pipelines.sensor.scorer import AnomalyScorer
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_for_stats, wait_online, write_config
from tests.test_burn_in import PERIOD_S, START, stream_csv
from training.datasets.sensors import lecture_sensor_data
from training.quality import nab_replay

BASE = "edgepipe/test"
ANOMALY = json.loads((ROOT / "schemas" / "anomaly.json").read_text())
STATS = json.loads((ROOT / "schemas" / "stats.json").read_text())
FAULT = slice(1500, 1800)  # a step fault of 25 hours on the second feature


def scores_of(values: np.ndarray) -> np.ndarray:
    """The committed autoencoder's score of each reading (NaN while its window fills), by the agent's scorer."""
    entry = read_manifest(MODELS_DIR / "manifest.json").get("autoencoder")
    scorer = AnomalyScorer(entry, TFLiteModel.from_entry(entry, MODELS_DIR, num_threads=1))
    stamps = [(START + datetime.timedelta(seconds=PERIOD_S * i)).isoformat() for i in range(len(values))]
    return np.array([np.nan if (s := scorer.score(v, t)) is None else s for v, t in zip(values.tolist(), stamps)])


def planned_models(tmp_path: Path, per_day: float, episode: bool) -> Path:
    """The committed autoencoder with the alert plan a trainer writes for 5-minute readings: the k-of-n plan
    on 1,400 normal readings, plus (`episode`) the episode plan for the same rate."""
    models = tmp_path / ("episode_models" if episode else "kofn_models")
    models.mkdir()
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    entry = manifest["models"]["autoencoder"]
    shutil.copy(MODELS_DIR / entry["file"], models / entry["file"])
    normal = lecture_sensor_data(seed=11).train[:1400].astype(np.float64)
    scores = scores_of(normal)
    alerts = plan_alerts(scores[~np.isnan(scores)], per_day, PERIOD_S).to_json()
    if episode:
        alerts["episode"] = EpisodePlan.for_period(PERIOD_S, per_day).to_json()
    entry["postprocess"] = {**entry["postprocess"], "alerts": alerts}
    manifest["models"] = {"autoencoder": entry}
    (models / "manifest.json").write_text(json.dumps(manifest))
    return models


def replay(broker: Broker, tmp_path: Path, values: np.ndarray, models: Path,
           keys: str = "") -> tuple[dict, list[dict], list[bytes]]:
    """Every reading through a real agent: its final stats.quality, its anomaly messages, its state messages."""
    stats_file = tmp_path / f"stats-{models.name}.json"
    csv = stream_csv(tmp_path / f"{models.name}.csv", values)
    config = write_config(tmp_path / f"{models.name}.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\nrate = 0\n{keys}',
                          stats_file=stats_file, models_dir=models, state_dir=tmp_path / f"state-{models.name}")
    collector = Collector(broker.port, [f"{BASE}/sensors/line1/anomaly", f"{BASE}/sensors/line1/state"])
    try:
        agent = AgentProcess(config, "--until-done")
        assert agent.wait(240) == 0, agent.output()
        if "episode" in json.loads((models / "manifest.json").read_text())["models"]["autoencoder"]["postprocess"][
                "alerts"]:  # the k-of-n plan's warnings (here: its 5-day calibration) are not the episode rule's
            assert "calibration too short" not in agent.output(), agent.output()
        stats = json.loads(stats_file.read_text())
        jsonschema.validate(stats, STATS)
        collector.sync()
    finally:
        collector.close()
    alerts = [json.loads(p) for t, p, _ in collector.messages if t.endswith("/anomaly")]
    for alert in alerts:
        jsonschema.validate(alert, ANOMALY)
    return stats["quality"]["sensor/line1"], alerts, [p for t, p, _ in collector.messages if t.endswith("/state")]


def faulty() -> np.ndarray:
    values = lecture_sensor_data(seed=7).train[:2400].astype(np.float64)
    values[FAULT, 1] += 0.2
    return values


def test_one_long_fault_is_one_alert_and_its_end_clears_the_state(broker: Broker, tmp_path: Path) -> None:
    models = planned_models(tmp_path, 0.1, episode=True)
    quality, alerts, states = replay(broker, tmp_path, faulty(), models)
    assert quality["rule"] == "episode" and quality["threshold_source"] == "manifest"
    assert len(alerts) == 1, [a["seq"] for a in alerts]  # one page for 25 hours of fault
    alert = alerts[0]
    assert FAULT.start <= alert["seq"] < FAULT.start + 12 and alert["is_anomaly"] and alert["threshold"] is None
    assert alert["episode"]["onset_seq"] == alert["seq"]
    assert alert["episode"]["cause"] == alert["evidence"]["top"][0]["feature"]  # what made it stays in the alert
    assert alert["rule"]["surprise"] >= alert["rule"]["on"] > alert["rule"]["off"]
    assert states[-1] == b"OFF" and b"ON" in states  # the episode's end cleared the state
    assert quality["alert_episodes"] == 1 and quality["episode"]["active"] is False
    line = describe(f"{BASE}/sensors/line1/anomaly", b"", alert)  # what `edge subscribe` prints for it
    assert line is not None and "ANOMALY" in line and f"on {alert['rule']['on']:.2f}" in line
    # `training nab`'s replay, on the same scores and manifest entry, pages at the same reading
    entry = read_manifest(models / "manifest.json").get("autoencoder")
    nab, _ = nab_replay.episode_rule(scores_of(faulty()), entry.postprocess, burn_in=entry.postprocess["alerts"][
        "episode"]["burn_in"])
    assert np.flatnonzero(nab.onsets).tolist() == [a["seq"] for a in alerts]


def test_an_old_manifest_without_an_episode_plan_runs_the_k_of_n_rule(broker: Broker, tmp_path: Path) -> None:
    quality, alerts, states = replay(broker, tmp_path, faulty(), planned_models(tmp_path, 0.1, episode=False))
    assert "rule" not in quality and (quality["debounce_k"], quality["debounce_n"]) == (2, 3)
    in_fault = [a for a in alerts if FAULT.start <= a["seq"] < FAULT.stop and a["is_anomaly"]]
    assert len(in_fault) > 100 and all(a["rule"]["k"] == 2 for a in in_fault)  # a message per alerting reading
    assert states[-1] == b"OFF"


@pytest.mark.slow
def test_the_episode_rule_holds_its_planned_rate_for_a_month(broker: Broker, tmp_path: Path) -> None:
    """30 days of normal 5-minute readings (the burn-in test's month), planned for 0.1 false episodes/day,
    `on` placed on the device's burn-in (the plan's 750 readings). At the rule's floor (on = 2, no planning)
    the same month gives 0.8 episodes/day."""
    month = lecture_sensor_data(seed=7).train[:30 * 288].astype(np.float64)
    quality, alerts, _ = replay(broker, tmp_path, month, planned_models(tmp_path, 0.1, episode=True))
    assert quality["rule"] == "episode" and quality["false_alarms_per_day"] == 0.1
    assert quality["burn_in"] is None and quality["episode"]["on_source"] in ("extremal", "conformal")
    assert quality["days"] == pytest.approx((len(month) - 1) * PERIOD_S / 86400, rel=0.01)
    assert quality["alert_episodes"] == len(alerts) >= 1  # one message per episode, and it does alert
    assert quality["observed_alerts_per_day"] <= 2 * 0.1 and not quality["plan_contradicted"]


def test_a_bad_episode_plan_is_refused_with_the_field_named() -> None:
    good = {"period_s": PERIOD_S, "episode": EpisodePlan.for_period(PERIOD_S, 0.1).to_json()}
    run = episode_alerts({"alerts": good}, "m", burn_in=False)
    assert run is not None and run.alerts.burn_in == 0 and run.source == "manifest"
    assert episode_alerts({"alerts": {k: v for k, v in good.items() if k != "episode"}}, "m") is None  # k-of-n
    replanned = episode_alerts({"alerts": good}, "m", false_alarms_per_day=1.0)
    assert replanned is not None and replanned.source == "replanned" and replanned.alerts.burn_in == 750
    assert replanned.alerts.rule.spec.on == pytest.approx(np.log10(288 / 1.0))
    bad = [({**good, "period_s": None}, "period_s"), ({**good, "episode": {**good["episode"], "on": 0}}, "on="),
           ({**good, "episode": {**good["episode"], "burn_in": -1}}, "burn_in"), ({**good, "episode": []}, "object")]
    episode, likelihood = good["episode"], good["episode"]["likelihood"]
    wrong_types = [  # each named by its path, with what was expected (it was Python's "TypeError: ..." before)
        ({**episode, "on": [3]}, "episode.on: expected a number, got a list"),
        ({**episode, "release": "6"}, "episode.release: expected an integer, got the string '6'"),
        ({**episode, "likelihood": [likelihood]}, "episode.likelihood: expected an object"),
        ({**episode, "likelihood": {**likelihood, "short": {"n": 3}}}, "likelihood.short: expected an integer, got an"),
        ({**episode, "likelihood": {**likelihood, "learn_in_alert": "no"}}, "learn_in_alert: expected true or false"),
        ({k: v for k, v in episode.items() if k != "cooldown"}, "episode.cooldown: missing")]
    bad += [({**good, "episode": plan}, re.escape(words)) for plan, words in wrong_types]
    for alerts, named in bad:
        with pytest.raises(ValueError, match=named) as found:
            episode_alerts({"alerts": alerts}, "m")
        assert "postprocess.alerts.episode" in str(found.value) and "Error:" not in str(found.value)


def test_burn_in_true_places_the_episode_rules_level_not_a_k_of_n_rule() -> None:
    """With an episode plan in the manifest, `burn_in = true` is the episode rule's burn-in (its `on` placed on
    `burn_in_readings`); without one, the device learns a k-of-n rule as before."""
    postprocess = {"threshold": 0.01, "alerts": {"period_s": PERIOD_S,
                                                 "episode": EpisodePlan.for_period(PERIOD_S, 0.1).to_json()}}
    cfg = SensorConfig(name="line1", burn_in=True, burn_in_readings=2880)
    assert not burns_in(cfg, postprocess) and burns_in(cfg, {"threshold": 0.01})
    run = episode_alerts(postprocess, "m", cfg.burn_in, cfg.burn_in_readings)
    assert run is not None and run.alerts.burn_in == 2880 and run.summary()["episode"]["on_source"] == "burn_in"


def test_an_agent_on_a_broken_episode_plan_refuses_to_start_and_says_why(broker: Broker, tmp_path: Path) -> None:
    models = planned_models(tmp_path, 0.1, episode=True)
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["models"]["autoencoder"]["postprocess"]["alerts"]["episode"]["release"] = 0
    (models / "manifest.json").write_text(json.dumps(manifest))
    csv = stream_csv(tmp_path / "s.csv", lecture_sensor_data(seed=7).train[:50].astype(np.float64))
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\nrate = 0\n', models_dir=models)
    agent = AgentProcess(config, "--until-done")
    code = agent.wait(60)
    assert code != 0 and "postprocess.alerts.episode" in agent.output() and "release" in agent.output()
    assert "Traceback" not in agent.output()


def test_a_commanded_threshold_replaces_the_episode_rule_and_reset_brings_it_back(broker: Broker,
                                                                                 tmp_path: Path) -> None:
    """cmd/threshold puts the k-of-n rule in force (its threshold is one): an open episode's ON state is
    replaced by the new rule's OFF; cmd/reset brings the manifest's episode rule back."""
    models = planned_models(tmp_path, 0.1, episode=True)
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port, '[[sensor]]\nname = "line1"\nburn_in = false\n',
                          stats_file=stats_file, stats_interval=0.2, models_dir=models)
    values = faulty()[1100:1510]  # 400 normal readings (more than the day of history), then the fault's start
    stamps = [(START + datetime.timedelta(seconds=PERIOD_S * i)).isoformat() for i in range(len(values))]
    collector = Collector(broker.port, [f"{BASE}/sensors/line1/state", f"{BASE}/sensors/line1/anomaly",
                                        f"{BASE}/cmd/threshold/result", f"{BASE}/cmd/reset/result"])
    agent = AgentProcess(config)
    quality = lambda s: s["quality"]["sensor/line1"]  # noqa: E731
    try:
        wait_online(broker.port)
        publish(broker.port, f"{BASE}/sensors/line1/reading",
                [json.dumps({"ts": t, "values": v}) for t, v in zip(stamps, values.tolist())])
        assert collector.wait_for(lambda: collector.matching("/anomaly"), 30), agent.output()
        assert collector.wait_for(lambda: collector.matching("/state")[-1:] == [b"ON"], 10)
        publish(broker.port, f"{BASE}/cmd/threshold", [json.dumps({"id": "t1", "sensor": "line1", "threshold": 1.0})])
        assert collector.wait_for(lambda: collector.json("/cmd/threshold/result"), 30), agent.output()
        assert collector.wait_for(lambda: collector.matching("/state")[-1:] == [b"OFF"], 10)  # the new rule's
        assert wait_for_stats(stats_file, lambda s: quality(s)["threshold_source"] == "command", 10)
        publish(broker.port, f"{BASE}/cmd/reset", [json.dumps({"id": "r1", "sensor": "line1"})])
        assert collector.wait_for(lambda: collector.json("/cmd/reset/result"), 30), agent.output()
        (answer,) = collector.json("/cmd/reset/result")  # the rule now in force: no score threshold (as stats say)
        assert answer["ok"] and answer["threshold"] is None and answer["threshold_source"] == "manifest", answer
        assert wait_for_stats(stats_file, lambda s: quality(s).get("rule") == "episode", 10)
    finally:
        assert agent.stop() == 0
        collector.close()
