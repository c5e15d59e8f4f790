"""Issue 26: every agent says what it is on the retained `edgepipe/<device>/info` -- its groups (from its
config), the agent version and its pipelines -- so a fleet view and a group rollout need only the broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

from edge.agent import Agent
from edge.config import ConfigError, load_config, parse_config
from edge.info import agent_version
from tests.conftest import ROOT
from tests.helpers.mqtt import Broker, Collector, write_config

SCHEMA = json.loads((ROOT / "schemas" / "device_info.json").read_text())


def test_the_agent_publishes_its_retained_info_at_connect(broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port,
                          '[[sensor]]\nname = "line1"\n\n[[series]]\nname = "airline"\n', device="shed-3",
                          top='groups = ["shed", "north-field"]\n')
    agent = Agent(load_config(config))
    agent.start()
    try:
        live = Collector(broker.port, ["edgepipe/shed-3/info"])
        try:
            assert live.wait_for(lambda: live.matching("/info"), 10)  # the broker has it
        finally:
            live.close()
        late = Collector(broker.port, ["edgepipe/shed-3/info"])  # subscribes after the agent sent it
        try:
            late.sync()
            got = [(payload, retain) for topic, payload, retain in late.messages]
        finally:
            late.close()
    finally:
        agent.stop()
    assert len(got) == 1 and got[0][1] is True, got  # retained
    body = json.loads(got[0][0])
    jsonschema.validate(body, SCHEMA)
    assert body["device"] == "shed-3" and body["groups"] == ["shed", "north-field"]
    assert body["pipelines"] == {"line1": "sensor", "airline": "series"}
    assert body["agent"] == agent_version() != "unknown"
    assert abs(body["ts"] - time.time()) < 60


@pytest.mark.parametrize("groups, message", [
    ("shed", "groups: expected a list"),
    (["Shed"], "groups: group 'Shed': expected 1-32 lower-case"),
    (["a" * 33], "expected 1-32 lower-case"),
    ([""], "expected 1-32 lower-case"),
    (["shed", "shed"], "expected distinct names"),
    ([f"g{i}" for i in range(17)], "expected at most 16 groups"),
    ([1], "group 1: expected"),
])
def test_bad_groups_are_refused_naming_the_key(groups: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"groups": groups})


def test_groups_default_to_none_and_keep_their_order() -> None:
    assert parse_config({}).groups == []
    assert parse_config({"groups": ["b", "a_1", "c-2"]}).groups == ["b", "a_1", "c-2"]
