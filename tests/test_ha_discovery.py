"""Issue 13 item 11: what Home Assistant sees of an agent, against a real mosquitto.

Each test is named after a fault seen with Home Assistant: the anomaly binary sensor `unknown`
until the first anomaly and after every HA restart; no unit or state class on the forecast;
the deprecated `object_id`; camera attributes changing every frame (a recorder flood); configs
of removed sensors never cleared; a phantom device left behind by the demo.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import ConfigError, parse_config
from edge.mqtt import messages
from edge.pipelines.camera import messages as camera
from edge.pipelines.camera.config import CameraConfig
from edge.pipelines.registry import kinds
from edge.pipelines.sensor.pipeline import SensorConfig
from edge.pipelines.series.pipeline import SeriesConfig
from tests.conftest import ROOT
from tests.helpers.isolation import no_tf_env
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, write_config

DEVICE = "pi-shed"
BASE = f"edgepipe/{DEVICE}"
MODEL = {"name": "cnn", "sha": "0123456789ab"}


def configs(**tables: list) -> dict[str, dict]:
    """Discovery configs by topic for the given tables (the agent's own builders)."""
    topics = messages.Topics(BASE)
    return {m.topic: json.loads(m.payload) for section, cfgs in tables.items() for cfg in cfgs
            for m in kinds()[section].discovery("homeassistant", topics, DEVICE, cfg)}


def config_topic(component: str, object_id: str) -> str:
    return f"homeassistant/{component}/edgepipe_{DEVICE}/{object_id}/config"


def retained(port: int, pattern: str) -> dict[str, bytes]:
    """What a subscriber arriving now is given (retained messages only)."""
    collector = Collector(port, [pattern])
    try:
        collector.sync()  # the retained messages come before the marker
        return {t: p for t, p, r in collector.messages if r}
    finally:
        collector.close()


def sensor_agent(tmp_path: Path, port: int, body: str, name: str = "agent") -> Path:
    config = write_config(tmp_path / f"{name}.toml", port, body, device=DEVICE, state_dir=tmp_path / "state")
    return config


def announced(collector: Collector) -> set[str]:
    """Config topics whose last payload seen is a config (not an empty, clearing one)."""
    last = {t: p for t, p, _ in collector.messages if t.startswith("homeassistant/")}
    return {t for t, p in last.items() if p}


def online(collector: Collector) -> bool:
    return collector.matching(f"{BASE}/status")[-1:] == [b"online"]


# --- the configs themselves ------------------------------------------------------------------
def test_discovery_uses_default_entity_id_not_deprecated_object_id() -> None:
    by_topic = configs(camera=[CameraConfig(name="cam0", source="gan")], sensor=[SensorConfig(name="line1")],
                       series=[SeriesConfig(name="airline")])
    assert set(by_topic) == {config_topic("sensor", "cam0_class"), config_topic("binary_sensor", "line1_anomaly"),
                             config_topic("sensor", "airline_forecast")}
    for topic, config in by_topic.items():
        component = topic.split("/")[1]
        assert "object_id" not in config
        # `<component>.<slug>`: the device id's dash is not allowed in an entity id
        assert config["default_entity_id"] == f"{component}.{config['unique_id'].replace('-', '_')}"
        assert re.fullmatch(rf"{component}\.[a-z0-9_]+", config["default_entity_id"])


def test_forecast_sensor_has_state_class_and_the_configured_unit() -> None:
    with_unit = configs(series=[SeriesConfig(name="airline", unit="passengers")])
    without = configs(series=[SeriesConfig(name="airline")])
    forecast = with_unit[config_topic("sensor", "airline_forecast")]
    assert forecast["state_class"] == "measurement" and forecast["unit_of_measurement"] == "passengers"
    assert "'intervals': value_json.intervals" in forecast["json_attributes_template"]  # the bounds, as attributes
    bare = without[config_topic("sensor", "airline_forecast")]
    assert bare["state_class"] == "measurement" and "unit_of_measurement" not in bare
    # the key is part of the [[series]] table, checked like every other
    assert parse_config({"series": [{"name": "a", "unit": "°C"}]}).series[0].unit == "°C"
    with pytest.raises(ConfigError, match=r"series\[0\]\.unit: expected a string"):
        parse_config({"series": [{"name": "a", "unit": 3}]})


def attribute_fields(config: dict) -> set[str]:
    """The payload fields an entity's attributes are made of (none given: the whole payload, `*`)."""
    template = config.get("json_attributes_template")
    return {"*"} if template is None else set(re.findall(r"value_json\.([a-z_]+)", template))


def test_camera_attributes_change_with_no_frame() -> None:
    """The old config made the whole class payload (seq, score, latency) attributes: a recorder row a frame."""
    topics = messages.Topics(BASE)
    frames = [json.loads(camera.classification(topics, DEVICE, MODEL, "cam0", label=label, index=i, score=score,
                                               top_k=[], seq=seq, latency_ms=latency).payload)
              for label, i, score, seq, latency in (("Shirt", 6, 0.91, 17, 3.2), ("Shirt", 6, 0.55, 18, 4.9))]
    config = configs(camera=[CameraConfig(name="cam0", source="gan")])[config_topic("sensor", "cam0_class")]
    fields = attribute_fields(config)
    assert fields == {"model"}
    # every field the attributes read exists in a real payload and is the same for both frames
    assert all(frames[0][f] == frames[1][f] for f in fields)
    assert {"seq", "score", "latency_ms", "top_k", "ts", "id"}.isdisjoint(fields)


def test_anomaly_attributes_keep_no_per_reading_fields() -> None:
    config = configs(sensor=[SensorConfig(name="line1")])[config_topic("binary_sensor", "line1_anomaly")]
    # the rule and the episode (issue 27) change per rule and per episode, not per reading
    assert attribute_fields(config) == {"model", "threshold", "rule", "episode"}
    assert "evidence" not in config["json_attributes_template"] and "score" not in config["json_attributes_template"]
    assert config["json_attributes_topic"] == f"{BASE}/sensors/line1/anomaly"


# --- against a broker ------------------------------------------------------------------------
def test_anomaly_binary_sensor_is_not_unknown_before_the_first_anomaly(broker: Broker, tmp_path: Path) -> None:
    """The retained `sensors/<name>/state` is `OFF` from the start, follows each change, and is what
    the binary sensor reads; the old binary sensor read the anomaly topic, silent until an anomaly."""
    config = sensor_agent(tmp_path, broker.port, '[[sensor]]\nname = "line1"\nthreshold = 1e-9\n')
    collector = Collector(broker.port, [f"{BASE}/#", "homeassistant/#"])
    agent = AgentProcess(config)
    state = f"{BASE}/sensors/line1/state"
    try:
        assert collector.wait_for(lambda: online(collector) and collector.matching(state), 30), agent.output()
        binary = json.loads(collector.matching(config_topic("binary_sensor", "line1_anomaly"))[-1])
        assert binary["state_topic"] == state and (binary["payload_on"], binary["payload_off"]) == ("ON", "OFF")
        assert retained(broker.port, state) == {state: b"OFF"}  # before any reading
        publish(broker.port, f"{BASE}/sensors/line1/reading", ["[0.5, 0.04]"] * 12)  # every score > 1e-9
        assert collector.wait_for(lambda: collector.matching(state)[-1:] == [b"ON"], 30), agent.output()
        assert retained(broker.port, state) == {state: b"ON"}
        publish(broker.port, f"{BASE}/cmd/threshold", [json.dumps({"id": "t", "sensor": "line1", "threshold": 1e9})])
        assert collector.wait_for(lambda: len(collector.matching("/cmd/threshold/result")) == 1, 30)
        publish(broker.port, f"{BASE}/sensors/line1/reading", ["[0.5, 0.04]"])
        assert collector.wait_for(lambda: collector.matching(state)[-1:] == [b"OFF"], 30), agent.output()
        assert retained(broker.port, state) == {state: b"OFF"}
    finally:
        assert agent.stop() == 0
        collector.close()
    changes = [json.loads(p)["is_anomaly"] for p in collector.matching("/anomaly") if json.loads(p)["changed"]]
    assert changes == [True, False]
    assert [p for p in collector.matching(state)] == [b"OFF", b"ON", b"OFF"]  # one state per change


def test_home_assistant_birth_brings_discovery_and_states_again(broker: Broker, tmp_path: Path) -> None:
    """HA restarted (its birth `online` on `homeassistant/status`): configs and current states are re-sent."""
    config = sensor_agent(tmp_path, broker.port, '[[sensor]]\nname = "line1"\n\n[[series]]\nname = "airline"\n')
    collector = Collector(broker.port, [f"{BASE}/#", "homeassistant/#"])
    agent = AgentProcess(config)
    state = f"{BASE}/sensors/line1/state"
    wanted = {config_topic("binary_sensor", "line1_anomaly"), config_topic("sensor", "airline_forecast"), state}
    try:
        assert collector.wait_for(lambda: online(collector) and wanted <= {t for t, _, _ in collector.messages}, 30)
        collector.wait_for(lambda: False, 1.0)
        with collector.cond:
            collector.messages.clear()
        publish(broker.port, "homeassistant/status", ["offline"])  # HA's Last Will: nothing to do
        publish(broker.port, "homeassistant/status", ["online"])
        assert collector.wait_for(lambda: wanted <= {t for t, _, _ in collector.messages}, 30), agent.output()
    finally:
        assert agent.stop() == 0
        collector.close()
    again = {t: p for t, p, _ in collector.messages if t in wanted}
    assert again[state] == b"OFF" and json.loads(again[config_topic("sensor", "airline_forecast")])["state_class"]


def test_removed_sensor_discovery_config_is_cleared(broker: Broker, tmp_path: Path) -> None:
    """A sensor dropped from the config leaves no entity behind; discovery switched off leaves none at all."""
    two = sensor_agent(tmp_path, broker.port, '[[sensor]]\nname = "line1"\n\n[[sensor]]\nname = "line2"\n', "two")
    one = sensor_agent(tmp_path, broker.port, '[[sensor]]\nname = "line1"\n', "one")
    off = sensor_agent(tmp_path, broker.port, '[[sensor]]\nname = "line1"\n', "off")
    off.write_text(off.read_text().replace("[mqtt]", "[mqtt]\ndiscovery = false"))
    line1, line2 = config_topic("binary_sensor", "line1_anomaly"), config_topic("binary_sensor", "line2_anomaly")
    expected = {two: {line1, line2}, one: {line1}, off: set()}
    for config, topics in expected.items():
        collector = Collector(broker.port, [f"{BASE}/status", "homeassistant/#"])
        agent = AgentProcess(config)
        try:
            # retained configs first, then (through the outbox) the clears: wait until the last word on
            # each config topic is what this config says
            assert collector.wait_for(lambda c=collector, t=topics: online(c) and announced(c) == t, 30), \
                agent.output()
            assert set(retained(broker.port, "homeassistant/#")) == topics
        finally:
            assert agent.stop() == 0
            collector.close()
    assert json.loads((tmp_path / "state" / "discovery.json").read_text())["topics"] == []


def test_demo_on_an_existing_broker_leaves_no_phantom_device(broker: Broker, tmp_path: Path) -> None:
    """`make demo` against the user's broker: its entities (and retained topics) go when it ends."""
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--broker", "existing", "--host", "127.0.0.1", "--port",
         str(broker.port), "--speed", "3", "--duration", "4", "--quiet", "--report", str(tmp_path / "report")],
        env=no_tf_env(), cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"the broker already listening on 127.0.0.1:{broker.port}" in result.stdout
    assert retained(broker.port, "homeassistant/#") == {}
    assert retained(broker.port, "edgepipe/demo/#") == {}
