"""Issue 27, Build 6: each alert says what made it -- the input numbers contributing most to the score, the
rule's state, and the episode it belongs to -- validated against schemas/anomaly.json on a real agent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

from edge.pipelines.sensor.evidence import contributions
from edge.pipelines.sensor.messages import ATTRIBUTES
from tests.conftest import ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_online, write_config

BASE = "edgepipe/test"
SCHEMA = json.loads((ROOT / "schemas" / "anomaly.json").read_text())
T0 = 1_780_000_000  # epoch seconds: a clock


def reading(i: int, x: float, y: float) -> str:
    return json.dumps({"ts": T0 + 60 * i, "values": [x, y]})


def test_contributions_name_the_number_that_carries_the_score() -> None:
    """A window of 3 readings of (a, b, day_sin, day_cos): the error sits on b one reading ago."""
    errors = [0.0] * 12
    errors[4 + 1], errors[8 + 0] = 0.9, 0.1
    found = contributions(errors, ["a", "b", "day_sin", "day_cos"])
    assert found["top"][0] == {"feature": "b", "step": -1, "share": 0.9}
    assert found["top"][1] == {"feature": "a", "step": 0, "share": 0.1}
    assert found["features"] == {"a": 0.1, "b": 0.9, "day_sin": 0.0, "day_cos": 0.0}


def test_a_real_alert_carries_evidence_rule_and_episode(broker: Broker, tmp_path: Path) -> None:
    """The committed autoencoder (x, y on the line y = 2x - 1): two bursts of readings off the line are two
    episodes; every message of one carries its id and onset, the message ending it too."""
    config = write_config(tmp_path / "agent.toml", broker.port, '[[sensor]]\nname = "line1"\n')
    collector = Collector(broker.port, [f"{BASE}/sensors/line1/anomaly"])
    agent = AgentProcess(config)
    normal = [(0.5, 0.0), (0.25, -0.5), (0.75, 0.5)]
    stream = [normal[i % 3] for i in range(6)] + [(0.9, -0.9)] * 4 + normal * 2 + [(0.1, 0.9)] * 3 + normal
    try:
        wait_online(broker.port)
        publish(broker.port, f"{BASE}/sensors/line1/reading", [reading(i, *v) for i, v in enumerate(stream)])
        assert collector.wait_for(lambda: sum(json.loads(p)["changed"] for p in collector.matching("/anomaly")) >= 4,
                                  30), agent.output()
    finally:
        assert agent.stop() == 0
    alerts = [json.loads(p) for p in collector.matching("/anomaly")]
    for alert in alerts:
        jsonschema.validate(alert, SCHEMA, format_checker=jsonschema.FormatChecker())
    first = [a for a in alerts if a["seq"] <= 11]
    assert [a["is_anomaly"] for a in first] == [True] * 4 + [False]  # 4 anomalous, then the one ending it
    assert len({a["episode"]["id"] for a in first}) == 1
    assert first[0]["episode"]["onset_ts"] == T0 + 60 * 6 and first[-1]["episode"]["onset_seq"] == first[0]["seq"]
    assert first[0]["episode"]["cause"] == first[0]["evidence"]["top"][0]["feature"] in ("x", "y")
    assert abs(sum(first[0]["evidence"]["features"].values()) - 1) < 1e-3
    assert first[0]["rule"] == {"k": 1, "n": 1, "above": 1, "threshold": first[0]["threshold"],
                                "threshold_source": "manifest"}
    second = [a for a in alerts if a["seq"] > 11]
    assert second and second[0]["episode"]["id"] != first[0]["episode"]["id"]  # a new episode, a new id
    # Home Assistant's attributes read the rule and the episode, never the per-reading score or evidence
    read = set(re.findall(r"value_json\.([a-z_]+)", ATTRIBUTES))
    assert read == {"model", "threshold", "rule", "episode"}
    assert all(alert["episode"]["id"] for alert in first)
