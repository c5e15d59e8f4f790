"""Commands that must change nothing: what to reset must be named, an empty message (a cleared retained
command) runs nothing, an id that cannot be echoed is refused; each answered in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, parse_config
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, write_config

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
    assert not bad_id["ok"] and "id must be a string" in bad_id["error"]
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
