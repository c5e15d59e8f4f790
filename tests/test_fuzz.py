"""Issue 6, target 4: bad input, fuzzed with hypothesis -- the parser, the config loader, and the
whole agent through a real broker. No exception escapes; every rejected input is counted and
described. `derandomize=True` makes every run draw the same cases (deterministic CI)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import SECTIONS, ConfigError, load_config, parse_config, pipeline_sections, top_level_keys
from edge.fields import keys_of
from edge.readings import MAX_PAYLOAD_BYTES, InvalidReading, parse_reading
from tests.helpers.mqtt import AgentProcess, Broker, Collector, described, write_config

BASE = "edgepipe/test"
FUZZ = settings(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

numbers = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(st.none() | st.booleans() | numbers | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=5),
                           max_leaves=20)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


payloads = st.one_of(
    st.binary(max_size=300),                                                      # arbitrary bytes
    st.text(max_size=200).map(str.encode),                                        # arbitrary unicode
    json_values.map(dumps),                                                       # JSON of every shape
    st.lists(numbers, max_size=6).map(dumps),                                     # wrong lengths, NaN, inf
    st.fixed_dictionaries({"ts": json_values, "values": st.lists(numbers, max_size=4)}).map(dumps),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4).map(
        lambda v: ",".join(map(str, v)).encode()),                                 # CSV lines
    st.integers(MAX_PAYLOAD_BYTES - 10, 4 * MAX_PAYLOAD_BYTES).map(lambda n: b"1," * (n // 2)),  # huge
)


@settings(FUZZ, max_examples=2000)
@given(payloads)
def test_reading_parser_accepts_only_finite_readings_of_the_right_length(payload: bytes) -> None:
    """2,000 cases: either a reading of 2 finite numbers, or InvalidReading with a reason."""
    try:
        reading = parse_reading(payload, expected=2)
    except InvalidReading as exc:
        assert str(exc)
        return
    assert len(reading.values) == 2 and all(math.isfinite(v) for v in reading.values)



# --- the config loader -----------------------------------------------------------------------------------------
BASE_CONFIG: dict[str, Any] = {"device_id": "pi", "mqtt": {"port": 1883}, "outbox": {"max_messages": 10}, "update": {},
                               "camera": [{"name": "cam0", "source": "picamera2"}],
                               "sensor": [{"name": "line1"}], "series": [{"name": "airline"}]}


def config_keys() -> list[tuple[str, ...]]:
    """Every settable key as a path into BASE_CONFIG: ("mqtt", "port"), ("sensor", 0, "rate"), ..."""
    keys: list[tuple[Any, ...]] = [(name,) for name in top_level_keys()]
    keys += [(section, name) for section, cls in SECTIONS.items() for name in keys_of(cls)]
    keys += [(kind, 0, name) for kind, cls in pipeline_sections().items() for name in keys_of(cls)]
    return keys


toml_values = st.recursive(st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True)
                           | st.text(max_size=30), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


@settings(FUZZ, max_examples=1500)
@given(st.sampled_from(config_keys()), toml_values)
@example(("mqtt", "password_file"), "\x00")  # found by a CI run: ValueError, embedded null byte
@example(("update", "enabled"), True)  # found by a CI run: the message said neither key nor "expected"
def test_every_invalid_config_value_is_named_with_what_was_expected(key: tuple, value: Any) -> None:
    data = json.loads(json.dumps(BASE_CONFIG))
    node = data
    for part in key[:-1]:
        node = node[part]
    node[key[-1]] = value
    try:
        parse_config(data)
    except ConfigError as exc:
        message = str(exc)
        leaf = key[-1]
        assert leaf in message, (key, value, message)
        assert any(word in message for word in ("expected", "unknown key", "cannot read", "required")), message
        return



@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=10), toml_values, min_size=1, max_size=3))
def test_unknown_keys_are_named(extra: dict[str, Any]) -> None:
    known = {*top_level_keys(), *SECTIONS, *pipeline_sections()}
    extra = {k: v for k, v in extra.items() if k not in known}
    if not extra:
        return
    with pytest.raises(ConfigError, match=r"unknown key \(known:"):
        parse_config({**BASE_CONFIG, **extra})


@settings(FUZZ, max_examples=300)
@given(st.binary(max_size=300))
def test_a_config_file_of_any_bytes_is_a_config_error_never_a_crash(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "agent.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))



# --- the whole agent, through the broker -----------------------------------------------------------------------
def test_agent_survives_fuzzed_payloads_on_every_input_topic(tmp_path: Path) -> None:
    """1,000 drawn payloads, each sent to the sensor, the series and a command topic (3,000 messages):
    the agent stays up, counts every reading, and reports each rejected one on `error`."""
    broker = Broker(tmp_path / "broker").start()
    config = write_config(tmp_path / "agent.toml", broker.port,
                          '[[sensor]]\nname = "line1"\n\n[[series]]\nname = "airline"\n')
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config)
    sender = paho.Client(CallbackAPIVersion.VERSION2)
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    sent: list[bytes] = []
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30), agent.output()

        @settings(FUZZ, max_examples=1000)
        @given(payloads)
        def send(payload: bytes) -> None:
            sent.append(payload)
            for topic in (f"{BASE}/sensors/line1/reading", f"{BASE}/series/airline/reading", f"{BASE}/cmd/threshold"):
                sender.publish(topic, payload, qos=1).wait_for_publish(10)

        send()
        n = len(sent)
        assert n >= 1000

        def settled() -> bool:
            stats = collector.json("/stats")
            if not stats:
                return False
            p = stats[-1]["pipelines"]
            return all(p[k]["received"] == n and p[k]["processed"] + p[k]["invalid"] == n
                       for k in ("sensor/line1", "series/airline"))

        assert collector.wait_for(settled, 120), (collector.json("/stats")[-1:], agent.output()[-2000:])
        assert collector.wait_for(lambda: len(collector.matching("/cmd/threshold/result")) >= n, 60)
        stats = collector.json("/stats")[-1]
        # the agent is still serving: a good reading still gets its score
        before = len(collector.matching("/anomaly"))
        sender.publish(f"{BASE}/cmd/threshold", json.dumps({"sensor": "line1", "threshold": 1e-9}), qos=1)
        sender.publish(f"{BASE}/sensors/line1/reading", b"[0.5, 0.5]", qos=1).wait_for_publish(10)
        assert collector.wait_for(lambda: len(collector.matching("/anomaly")) > before, 30), agent.output()[-2000:]
    finally:
        sender.disconnect()
        sender.loop_stop()
        code = agent.stop()
        # the last coalesced reports go out at the clean stop, before `offline` on the same connection
        collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"offline"], 15)
        collector.close()
        broker.stop()
    assert code == 0
    sensor, series = stats["pipelines"]["sensor/line1"], stats["pipelines"]["series/airline"]
    # what the parser rejects, plus values the model cannot take (beyond float32 once scaled; log of <= 0)
    assert sensor["invalid"] >= sum(1 for p in sent if not _parses(p, 2)) > 0
    assert series["invalid"] >= sum(1 for p in sent if not _parses(p, 1)) > 0
    errors = collector.json("/error")
    assert not [e for e in errors if "internal error" in e["reason"]]  # every refusal is a described one
    for component, counters in (("sensor/line1", sensor), ("series/airline", series)):
        # every rejected reading described or counted, once: bursts are coalesced into `repeated`
        assert described(errors, component) == counters["invalid"]
        mine = [e for e in errors if e["component"] == component]
        assert all(e["reason"].startswith("invalid reading: ") and e["input"] is not None for e in mine)
    results = collector.json("/cmd/threshold/result")
    assert len(results) == n + 1  # one answer per command, the last one ours
    assert all(r["error"] for r in results if not r["ok"])
    for payload in collector.matching("/anomaly") + collector.matching("/forecast/airline"):
        json.loads(payload, parse_constant=_refuse)  # what we publish is strict JSON: no NaN or Infinity
    print(f"fuzz through the broker: {n} payloads x 3 topics; sensor rejected {sensor['invalid']}, series "
          f"rejected {series['invalid']}, commands refused {len([r for r in results if not r['ok']])}")


def _parses(payload: bytes, expected: int) -> bool:
    try:
        parse_reading(payload, expected=expected)
        return True
    except InvalidReading:
        return False


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} in a published payload")
