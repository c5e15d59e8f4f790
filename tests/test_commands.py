"""Commands that must change nothing: what to reset must be named, an empty message (a cleared retained
command) runs nothing, an id that cannot be echoed is refused; each answered in words."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import ConfigError, parse_config
from tests.conftest import ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, acknowledged, publish, wait_online, write_config

BASE = "edgepipe/test"


def test_a_reset_that_names_nothing_resets_nothing(broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker.port, '[[series]]\nname = "airline"\n')
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config)
    results = lambda: collector.json("/cmd/reset/result")  # noqa: E731
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30)
        publish(broker.port, f"{BASE}/cmd/reset", [
            b"", b'{"id": "r1"}', b'{"id": ["x"], "series": "airline"}', b'{"id": "r3", "series": "airline"',
            b'{"series": "airline", "sensor": "line1"}', b'{"id": "r4", "series": "*"}'])
        assert collector.wait_for(lambda: len(results()) == 6, 30), agent.output()
    finally:
        agent.stop()
        collector.close()
    empty, unnamed, bad_id, not_json, both, everything = results()
    assert not both["ok"] and "not both" in both["error"]
    assert not empty["ok"] and "empty command does nothing" in empty["error"]
    assert not unnamed["ok"] and unnamed["request_id"] == "r1" and "name what to reset" in unnamed["error"]
    assert not bad_id["ok"] and "id must be a string" in bad_id["error"] and "within ±9.2e18" in bad_id["error"]
    assert not not_json["ok"] and not_json["error"].startswith("not JSON:")
    assert everything["ok"] and everything["reset"] == ["airline"]
    assert sum(1 for r in results() if r.get("reset")) == 1  # only the one that named it reset anything


@pytest.mark.parametrize("key", ["ca_file", "cert_file", "key_file"])
def test_an_unreadable_tls_file_is_refused_naming_the_key(tmp_path: Path, key: str) -> None:
    mqtt = {"tls": True, "ca_file": str(tmp_path / "ca.crt"), "cert_file": str(tmp_path / "c.crt"),
            "key_file": str(tmp_path / "c.key")}
    for other in ("ca_file", "cert_file", "key_file"):
        if other != key:
            Path(mqtt[other]).write_text("x")
    with pytest.raises(ConfigError, match=rf"mqtt\.{key}: cannot read .*No such file"):
        parse_config({"mqtt": mqtt})


def test_one_debounce_key_keeps_the_other_from_the_plan_and_a_stated_rate_owns_both() -> None:
    """`debounce_n = 5` on a 2-of-3 plan is 2-of-5, not 1-of-5; `false_alarms_per_day` with a debounce of
    the config's own would apply a threshold planned for another debounce: refused."""
    from edge.alerts.plan import fill_debounce

    assert fill_debounce((None, 5), 2, 3) == (2, 5)
    assert fill_debounce((3, None), 2, 3) == (3, 3) and fill_debounce((4, None), 2, 3) == (4, 4)
    assert fill_debounce((None, 5), 1, 1) == (1, 5)  # no plan: 1-of-n, as before plans
    parse_config({"sensor": [{"name": "line1", "debounce_k": 3}]})  # n from the plan (or k-of-k): accepted
    with pytest.raises(ConfigError, match="false_alarms_per_day: it plans the debounce"):
        parse_config({"sensor": [{"name": "line1", "false_alarms_per_day": 1.0, "debounce_k": 1}]})


def test_a_command_refused_for_a_full_queue_is_answered_by_its_id(broker: Broker, tmp_path: Path) -> None:
    """`command_queue = 1`: a burst of commands behind slow reloads overflows the queue. Every command sent gets
    exactly one answer carrying its id -- carried out, or refused at once with `busy: ...` -- none waits for ever,
    and each refusal is counted in `stats.invalid_commands` (found in a new-user trial: a refusal for a full queue
    was only logged). Seen failing with the answer's `send` removed from `Commands._refuse_busy`."""
    schema = json.loads((ROOT / "schemas" / "command_result.json").read_text())
    config = write_config(tmp_path / "agent.toml", broker.port, '[[series]]\nname = "airline"\n',
                          top="command_queue = 1\n")
    sent = [(f"{BASE}/cmd/reload", {"id": f"c{i}"}) if i % 8 == 0 else
            (f"{BASE}/cmd/reset", {"id": f"c{i}", "series": "airline"}) for i in range(60)]
    collector = Collector(broker.port, [f"{BASE}/cmd/+/result", f"{BASE}/stats"])
    agent = AgentProcess(config)
    answers = lambda: {r["id"]: r for r in collector.json("/result")}.values()  # noqa: E731 - repeats dropped by id
    try:
        wait_online(broker.port)
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            for info in [client.publish(topic, json.dumps(body), qos=1) for topic, body in sent]:
                acknowledged(info, 10)
        finally:
            client.disconnect()
            client.loop_stop()
        assert collector.wait_for(lambda: len(answers()) >= len(sent), 60), agent.output()
        busy = [a for a in answers() if not a["ok"] and a["error"].startswith("busy:")]
        assert collector.wait_for(lambda: any(s["invalid_commands"] >= len(busy) for s in collector.json("/stats")), 30)
    finally:
        agent.stop()
        collector.close()
    by_request = {}
    for answer in answers():
        jsonschema.validate(answer, schema)
        by_request.setdefault(answer["request_id"], []).append(answer)
    assert set(by_request) == {body["id"] for _, body in sent}  # every id answered, and (below) none twice
    assert all(len(a) == 1 for a in by_request.values()), [a for a in by_request.values() if len(a) > 1]
    assert busy, "no command was refused for a full queue: the test did not overflow it"
    assert all(a["error"] == "busy: 1 command already waiting, try again" for a in busy)
    assert any(a["ok"] for a in answers())
    assert len(busy) + sum(a["ok"] for a in answers()) == len(sent)  # refused only for being busy
