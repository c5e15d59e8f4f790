"""Issue 15: alerts at a stated false-alarm rate in the running agent, and `cmd/calibrate` over MQTT.

The committed autoencoder (lecture data, x/y readings) and the real interpreter score the
lecture's held-out normal draws; a plan calibrated on one half (as the trainer writes it into
`postprocess.alerts`) must hold on the other half in the agent, and a calibration commanded over
MQTT must move the threshold, survive a restart and be refused when the request is nonsense.
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.alerts.calibration import AlertPlan, plan_alerts
from edge.alerts.ledger import AlertLedger
from edge.alerts.plan import alert_summary, check_plan, resolve
from edge.alerts.recalibrate import Collection
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.pipelines.sensor.pipeline import SensorConfig
from edge.pipelines.sensor.rulefiles import PlanFile
from edge.pipelines.sensor.scorer import AnomalyScorer
from edge.timestamps import clock_seconds
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_online, write_config
from training.datasets.sensors import lecture_sensor_data

BASE = "edgepipe/test"
SCHEMAS = {p.stem: json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.json")}
PERIOD_S = 60.0
START = datetime.datetime(2026, 3, 1)


def validate(kind: str, payloads: list[dict]) -> None:
    for payload in payloads:
        jsonschema.validate(payload, SCHEMAS[kind], format_checker=jsonschema.FormatChecker())


def scores(values: np.ndarray) -> np.ndarray:
    entry = read_manifest(MODELS_DIR / "manifest.json").get("autoencoder")
    scorer = AnomalyScorer(entry, TFLiteModel.from_entry(entry, MODELS_DIR))
    return np.asarray([scorer.score(v) for v in values], np.float64)


def models_with_plan(tmp_path: Path, plan: AlertPlan) -> Path:
    """The committed autoencoder alone, its manifest entry carrying `plan` as the trainer writes it."""
    models = tmp_path / "models"
    models.mkdir()
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    entry = manifest["models"]["autoencoder"]
    shutil.copy(MODELS_DIR / entry["file"], models / entry["file"])
    entry["postprocess"] = {**entry["postprocess"], "threshold": plan.threshold, "alerts": plan.to_json()}
    manifest["models"] = {"autoencoder": entry}
    (models / "manifest.json").write_text(json.dumps(manifest))
    return models


def timestamped_csv(path: Path, values: np.ndarray) -> Path:
    stamps = [(START + datetime.timedelta(seconds=PERIOD_S * i)).isoformat() for i in range(len(values))]
    rows = (f"{t},{float(x)!r},{float(y)!r}\n" for t, (x, y) in zip(stamps, values))
    path.write_text("timestamp,x,y\n" + "".join(rows))
    return path


@pytest.fixture(scope="module")
def normal() -> tuple[np.ndarray, np.ndarray]:
    """Held-out normal draws: the first half calibrates, the second half is the stream."""
    data = lecture_sensor_data().validation
    return data[:1000], data[1000:]


def test_manifest_plan_meets_its_false_alarm_rate_in_the_running_agent(
        broker: Broker, tmp_path: Path, normal: tuple[np.ndarray, np.ndarray]) -> None:
    calibration, stream = normal
    plan = plan_alerts(scores(calibration), false_alarms_per_day=72.0, period_s=PERIOD_S)  # alpha 5%
    assert (plan.k, plan.n) == (3, 5) and plan.method == "conformal"
    stats_file = tmp_path / "stats.json"
    config = write_config(tmp_path / "agent.toml", broker.port,
                          f'[[sensor]]\nname = "line1"\nsource = "csv:{timestamped_csv(tmp_path / "s.csv", stream)}"'
                          '\nrate = 0\n', models_dir=models_with_plan(tmp_path, plan), stats_file=stats_file)
    collector = Collector(broker.port, [f"{BASE}/sensors/#"])
    try:
        agent = AgentProcess(config, "--until-done")
        assert agent.wait(120) == 0, agent.output()
        final = json.loads(stats_file.read_text())
        quality = final["quality"]["sensor/line1"]
        assert collector.wait_for(lambda: len(collector.json("/anomaly")) >= quality["alert_episodes"], 10)
    finally:
        collector.close()
    validate("stats", [final])
    assert final["pipelines"]["sensor/line1"]["processed"] == len(stream) and quality["readings"] == len(stream)
    active = [m for m in collector.json("/anomaly") if m["is_anomaly"]]
    # the rule is active on about alpha of normal readings; neighbouring statistics share up to n scores
    n = len(stream) - 4
    band = 3.5 * math.sqrt(n * plan.alpha * (1 - plan.alpha) * plan.n)
    assert 0 < len(active) and abs(len(active) - plan.alpha * n) <= band, (len(active), plan.alpha * n, band)
    assert quality["threshold_source"] == "manifest" and quality["threshold"] == pytest.approx(plan.threshold)
    assert (quality["debounce_k"], quality["debounce_n"]) == (3, 5)
    assert quality["expected_false_alerts_per_day"] == pytest.approx(plan.expected_per_day)
    assert quality["days"] == pytest.approx((len(stream) - 1) * PERIOD_S / 86400)  # from the readings' own clock
    assert quality["observed_alerts_per_day"] == pytest.approx(quality["alert_episodes"] / quality["days"])
    assert quality["observed_alerts_per_day"] <= quality["expected_false_alerts_per_day"] * 1.5
    assert quality["excess_p_value"] > 0.001
    assert active[0]["reading_ts"].startswith("2026-03-01T")  # the CSV's clock travels with the alert


def test_false_alarms_per_day_in_the_config_replans_from_the_manifest(
        tmp_path: Path, normal: tuple[np.ndarray, np.ndarray]) -> None:
    plan = plan_alerts(scores(normal[0]), false_alarms_per_day=72.0, period_s=PERIOD_S)
    entry = read_manifest(models_with_plan(tmp_path, plan) / "manifest.json").get("autoencoder")
    strict = resolve(SensorConfig(name="s", false_alarms_per_day=7.2), entry.postprocess, "autoencoder", None, None)
    assert strict.threshold > plan.threshold and strict.expected_per_day <= 7.2 * 1.01
    assert (strict.k, strict.n, strict.source) == (3, 5, "replanned")  # issue 24 item 19: not "manifest"
    quality = alert_summary(strict, AlertLedger(strict.expected_active_rate or 0.0, PERIOD_S))
    jsonschema.validate({"quality": {"sensor/s": quality}}, {**SCHEMAS["stats"], "required": []})
    forced = resolve(SensorConfig(name="s", debounce_k=1, debounce_n=1), entry.postprocess, "autoencoder", None, None)
    assert forced.expected_per_day is None  # another debounce: the calibration no longer speaks for the rule
    committed = read_manifest(MODELS_DIR / "manifest.json").get("autoencoder").postprocess  # no plan
    with pytest.raises(ValueError, match="has no alert plan"):
        resolve(SensorConfig(name="s", false_alarms_per_day=1.0), committed, "autoencoder", None, None)
    bad = {**entry.postprocess, "alerts": {**entry.postprocess["alerts"], "threshold": float("nan")}}
    with pytest.raises(ValueError, match="postprocess.alerts"):
        resolve(SensorConfig(name="s"), bad, "autoencoder", None, None)


def readings(values: np.ndarray, first: int = 0) -> list[str]:
    return [json.dumps({"ts": (START + datetime.timedelta(seconds=PERIOD_S * (first + i))).isoformat(),
                        "values": [float(x), float(y)]}) for i, (x, y) in enumerate(values)]


def test_calibrate_over_mqtt_moves_the_threshold_persists_and_refuses_nonsense(broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port, '[[sensor]]\nname = "line1"\n', stats_interval=0.5)
    manifest_threshold = read_manifest(MODELS_DIR / "manifest.json").get("autoencoder").postprocess["threshold"]
    noisy = lecture_sensor_data().anomalous["noisy"][:200]  # the user says: this is what normal looks like here
    collector = Collector(broker.port, [f"{BASE}/cmd/#", f"{BASE}/stats"])
    agent = AgentProcess(config)
    try:
        wait_online(broker.port)
        publish(broker.port, f"{BASE}/cmd/calibrate", [
            b'{"sensor": "line1", "readings": -5}', b'{"sensor": "line1", "seconds": NaN}',
            b'{"sensor": "line1", "seconds": Infinity}', b'{"sensor": "line1", "readings": 100, "seconds": 60}',
            b'{"sensor": "line1", "readings": 100, "false_alarms_per_day": -1}', b'{"readings": 100}',
            b'{"sensor": "line1", "readings": 3}', b'{"sensor": "line1", "reading": 100}'])
        assert collector.wait_for(lambda: len(collector.json("/cmd/calibrate/result")) == 8, 30), agent.output()
        refused = collector.json("/cmd/calibrate/result")
        assert [r["ok"] for r in refused] == [False] * 8
        assert "NaN and infinity are refused" in refused[1]["error"] and "unknown key" in refused[7]["error"]
        publish(broker.port, f"{BASE}/cmd/calibrate",
                [b'{"id": "c0", "sensor": "line1", "readings": 100}',  # replaced by the next one: cancelled
                 b'{"id": "c1", "sensor": "line1", "readings": 150, "false_alarms_per_day": 144}'])
        # c1 collecting (commands have a thread of their own) before the readings it is to collect are sent
        assert collector.wait_for(lambda: len(collector.json("/cmd/calibrate/result")) == 11, 30), agent.output()
        publish(broker.port, f"{BASE}/sensors/line1/reading", readings(noisy))
        assert collector.wait_for(lambda: len(collector.json("/cmd/calibrate/result")) == 12, 30), agent.output()
        replaced, cancelled, first, done = collector.json("/cmd/calibrate/result")[8:]
        assert replaced["state"] == "collecting" and replaced["request_id"] == "c0"
        assert cancelled["state"] == "cancelled" and cancelled["request_id"] == "c0" and not cancelled["ok"]
        assert first["ok"] and first["state"] == "collecting" and first["request_id"] == "c1"
        assert done["ok"] and done["state"] == "done" and done["request_id"] == "c1", done
        assert done["readings"] == 150 and done["period_s"] == PERIOD_S and done["persisted"]
        assert (done["debounce_k"], done["debounce_n"]) == (3, 5) and done["threshold_source"] == "calibrated"
        assert done["threshold"] > 2 * manifest_threshold  # noisy readings declared normal: the threshold moves up
        assert done["expected_false_alerts_per_day"] <= 144 * 1.01
        validate("command_result", collector.json("/cmd/calibrate/result"))
    finally:
        assert agent.stop() == 0
    collector.sync()  # the stopped agent's last stats are in: `mark` is past them
    agent = AgentProcess(config)  # a restart keeps the calibrated rule
    try:
        mark = len(collector.json("/stats"))
        assert collector.wait_for(lambda: any(s["quality"]["sensor/line1"]["threshold_source"] == "calibrated"
                                              for s in collector.json("/stats")[mark:]), 30), agent.output()
        quality = collector.json("/stats")[-1]["quality"]["sensor/line1"]
        assert quality["threshold"] == pytest.approx(done["threshold"]) and quality["debounce_n"] == 5
        publish(broker.port, f"{BASE}/cmd/reset", [b'{"sensor": "line1"}'])
        assert collector.wait_for(lambda: len(collector.json("/cmd/reset/result")) == 1, 30)
        assert collector.json("/cmd/reset/result")[0]["threshold_source"] == "manifest"
        assert not (tmp_path / "state" / "line1.alerts.json").exists()
        validate("stats", collector.json("/stats"))
    finally:
        assert agent.stop() == 0
        collector.close()


def test_a_stuck_stream_gives_no_calibration() -> None:
    """All scores 0 (a stuck sensor the model reconstructs perfectly): no threshold > 0 exists, refused."""
    collection = Collection.parse({"sensor": "s", "readings": 30}, "r", None, None)
    assert not any(collection.add(0.0, PERIOD_S * i) for i in range(29)) and collection.add(0.0, 29 * PERIOD_S)
    with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
        check_plan(collection.plan().to_json(), "calibrate")
    short = Collection.parse({"sensor": "s", "seconds": 1e-9}, "r", None, None)
    assert short.add(1.0, None)  # the span is over: the reading is not taken
    with pytest.raises(ValueError, match="only 0 scored readings"):
        short.plan()


def test_only_a_clock_dates_the_false_alert_rate() -> None:
    """A counter in `ts` ("ts": 17) orders readings but is no clock: it must not make 400 readings 400 seconds."""
    assert clock_seconds(17) is None and clock_seconds(399.0) is None
    assert clock_seconds(1.7e9) == 1.7e9 and clock_seconds("2026-01-01T00:01:00") == 1767225660.0


def test_a_saved_calibration_belongs_to_its_model_file(tmp_path: Path, normal: tuple[np.ndarray, np.ndarray]) -> None:
    """A retrained model scores in other units: the plan fitted on the old file's scores is not applied to it."""
    plan = plan_alerts(scores(normal[0][:200]), false_alarms_per_day=72.0, period_s=PERIOD_S)
    saved = PlanFile(tmp_path / "line1.alerts.json")
    saved.save(plan, "a" * 64)
    assert saved.path.stat().st_mode & 0o777 == 0o644
    assert saved.load("a" * 64).threshold == plan.threshold and saved.load("b" * 64) is None
    saved.path.write_text('{"model_sha256": "' + "a" * 64 + '", "plan": {"threshold": -1}}')
    assert saved.load("a" * 64) is None  # unreadable: ignored with a warning, the manifest's rule applies
