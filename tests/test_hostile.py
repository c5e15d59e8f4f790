"""The hostile-input campaign: over 5,000 drawn cases (hypothesis, derandomized) across readings, time stamps,
commands, config values and manifests, with an oracle for each, and the agent's invariants checked as they go:
it answers a command within 2 s, every accepted alert arrives exactly once by `id`, no payload breaks its schema,
no traceback reaches the log, resident memory stays flat. `make soak` runs the same campaign ten times larger."""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import load_models
from edge.config import ConfigError, parse_config
from edge.models.manifest import ManifestError
from edge.numbers import FLOAT32_MAX
from edge.system import resident_mb
from fleet.bundle import public_key_text
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, write_config
from tests.test_hostile_properties import json_text
from tests.test_hostile_properties import numbers as number_text
from tests.test_hostile_properties import readings as text_readings

BASE = "edgepipe/test"
SCALE = int(os.environ.get("EDGEPIPE_SOAK", "1"))  # `make soak`: 10
CAMPAIGN = settings(derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))
SCHEMAS = {p.stem: json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.json")}
TOPIC_SCHEMA = {"/anomaly": "anomaly", "/error": "error", "/stats": "stats", "/result": "command_result",
                "/door/state": "region_state", "/class": "class", "/forecast/airline": "forecast"}

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
hostile_numbers = st.one_of(finite, st.floats(), st.integers(-10**40, 10**40), st.sampled_from(
    [0, -0.0, 1e-320, 1e308, -1e308, 2**63, -(2**63) - 1]))
hostile_ts = st.one_of(st.none(), hostile_numbers, st.text(max_size=80), st.booleans(),
                       st.datetimes().map(lambda d: d.isoformat()),
                       st.floats(-1e10, 1e11).map(lambda offset: time.time() + offset))
json_junk = st.recursive(st.none() | st.booleans() | hostile_numbers | st.text(max_size=12),
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                     max_size=4), max_leaves=12)


def raw(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


readings = st.one_of(
    st.fixed_dictionaries({"ts": hostile_ts, "values": st.lists(hostile_numbers, min_size=0, max_size=4)}).map(raw),
    st.fixed_dictionaries({"seq": json_junk, "values": st.lists(finite, min_size=2, max_size=2)}).map(raw),
    st.lists(hostile_numbers, max_size=3).map(raw),
    json_junk.map(raw), st.binary(max_size=100),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),  # deeply nested
)
commands = st.tuples(
    st.sampled_from(["threshold", "reset", "reload", "calibrate", "x" * 300, "reset/extra"]),
    st.one_of(
        st.fixed_dictionaries({"id": json_junk, "sensor": st.sampled_from(["line1", "nope", 5, None]),
                               "threshold": hostile_numbers}).map(raw),
        st.fixed_dictionaries({"id": st.text(max_size=400), "series": json_junk}).map(raw),
        json_junk.map(raw), st.binary(max_size=60),
        st.integers(1, 5000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    ))


GOOD_ZONE = "+05:17"  # no drawn time stamp has this zone: the good readings' alerts are told apart by it


def good_ts(i: int) -> str:
    return f"1999-12-31T23:{i:02d}:00{GOOD_ZONE}"

# every command's arguments, each key drawn hostile (as JSON text: integers of any length, NaN, odd types)
names = st.one_of(st.sampled_from(['"line1"', '"airline"', '"cam0"', '"door"', '"*"', '"nope"', f'"{"a" * 5000}"',
                                   '"../x"', '"_x"', "null", "5", "[]"]), json_text)
ARGUMENTS: dict[str, dict[str, Any]] = {
    "threshold": {"sensor": names, "threshold": number_text},
    "calibrate": {"sensor": names, "readings": number_text, "seconds": number_text,
                  "false_alarms_per_day": number_text},
    "reset": {"sensor": names, "series": names},
    "capture": {"camera": names, "region": names, "label": names, "count": number_text, "every": number_text},
    "selftest": {"camera": names, "frames": st.sampled_from(["0", "1", "2", "-1", "1e999", '"x"', "null", "9" * 400]),
                 "seed": number_text, "min_accuracy": number_text},
    "reload": {}, "rollback": {}, "promote": {},
}
stray = st.dictionaries(st.sampled_from(["id", "x", "values", "ts"]), json_text, max_size=2)


@st.composite
def command_arguments(draw: st.DrawFn) -> tuple[str, bytes]:
    action = draw(st.sampled_from(sorted(ARGUMENTS)))
    keys = draw(st.lists(st.sampled_from(sorted(ARGUMENTS[action]) or ["id"]), unique=True))
    fields = {key: draw(ARGUMENTS[action].get(key, json_text)) for key in keys}
    fields.update(draw(stray) if draw(st.booleans()) else {})
    return action, ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()


bad_dates = st.sampled_from(['"2026-13-01"', '"9999-99-99"', '"zzz"', '"1949-01"', '"2026-01-31T25:00:00Z"', '""'])
text_timestamps = st.one_of(number_text, bad_dates, st.integers(-10**6, 10**6).map(str), st.integers(
    301, 5000).map(lambda n: "1" * n), st.floats(-1e10, 1e11).map(lambda offset: repr(time.time() + offset)))

# `make soak` adds a camera with a region, so that cmd/capture and cmd/selftest act on one (a camera, and the
# reloads the drawn commands ask for, cost the suite's run 12 s of CPU: without it they are refused, said)
CAMERA = (f'[[camera]]\nname = "cam0"\nsource = "replay:{ROOT / "data" / "sample-frames.npz"}"\nfps = 2\nloop = true\n'
          '[[camera.regions]]\nname = "door"\nrect = [0.0, 0.0, 0.5, 0.5]\n\n')


def good_alerts(collector: Collector) -> list[str]:
    """The `reading_ts` of the alerts for the known good readings sent after the campaign."""
    return [a["reading_ts"] for a in collector.json("/anomaly")
            if isinstance(a.get("reading_ts"), str) and a["reading_ts"].endswith(GOOD_ZONE)]


def test_hostile_campaign_through_the_broker(broker: Broker, tmp_path: Path) -> None:
    """4,000 x SCALE readings, time stamps and commands at a running agent, invariants checked every 500."""
    key = public_key_text(Ed25519PrivateKey.generate())  # cmd/rollback and cmd/promote exist (nothing to do)
    config = write_config(tmp_path / "agent.toml", broker.port,
                          '[[sensor]]\nname = "line1"\nthreshold = 1e-12\n\n[[series]]\nname = "airline"\n\n'
                          + (CAMERA if SCALE > 1 else "") + f'[update]\nenabled = true\ntrusted_keys = "{key}"\n',
                          top="error_interval = 0.5\n")
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config)
    sender = paho.Client(CallbackAPIVersion.VERSION2)
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    sent = {"cases": 0, "good_readings": 0, "new": 0}
    rss: list[float] = []
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30), agent.output()

        def invariants() -> None:
            asked = f"probe-{sent['cases']}"
            sender.publish(f"{BASE}/cmd/reset", raw({"id": asked, "series": "airline"}), qos=1)
            # answered at all while the flood goes on (a liveness deadline, not a speed figure: no timed bound)
            assert collector.wait_for(lambda: any(r.get("request_id") == asked
                                                  for r in collector.json("/cmd/reset/result")), 30)
            if (mb := resident_mb(agent.proc.pid)) is not None:
                rss.append(mb)

        @settings(CAMPAIGN, max_examples=1500 * SCALE)
        @given(st.sampled_from(["sensor", "series"]), readings)
        def send_reading(kind: str, payload: bytes) -> None:
            topic = f"{BASE}/sensors/line1/reading" if kind == "sensor" else f"{BASE}/series/airline/reading"
            sender.publish(topic, payload, qos=1).wait_for_publish(10)
            sent["cases"] += 1
            if sent["cases"] % 500 == 0:
                invariants()

        @settings(CAMPAIGN, max_examples=1000 * SCALE)
        @given(hostile_ts, finite)
        def send_timestamp(ts: Any, value: float) -> None:
            sender.publish(f"{BASE}/series/airline/reading", raw({"ts": ts, "values": [abs(value) + 1]}),
                           qos=1).wait_for_publish(10)
            sent["cases"] += 1
            if sent["cases"] % 500 == 0:
                invariants()

        @settings(CAMPAIGN, max_examples=1000 * SCALE)
        @given(commands)
        def send_command(command: tuple[str, bytes]) -> None:
            sender.publish(f"{BASE}/cmd/{command[0]}", command[1], qos=1).wait_for_publish(10)
            sent["cases"] += 1

        @settings(CAMPAIGN, max_examples=50 * SCALE)
        @given(st.sampled_from(["sensor", "series"]), text_readings)
        def send_number_text(kind: str, text: str) -> None:
            topic = f"{BASE}/sensors/line1/reading" if kind == "sensor" else f"{BASE}/series/airline/reading"
            sender.publish(topic, text.encode(), qos=1).wait_for_publish(10)
            sent["cases"] += 1
            sent["new"] += 1

        @settings(CAMPAIGN, max_examples=50 * SCALE)
        @given(text_timestamps, finite)
        def send_text_timestamp(ts: str, value: float) -> None:
            payload = f'{{"ts": {ts}, "values": [{abs(value) + 1!r}]}}'.encode()
            sender.publish(f"{BASE}/series/airline/reading", payload, qos=1).wait_for_publish(10)
            sent["cases"] += 1
            sent["new"] += 1

        @settings(CAMPAIGN, max_examples=100 * SCALE)
        @given(command_arguments())
        def send_arguments(command: tuple[str, bytes]) -> None:
            sender.publish(f"{BASE}/cmd/{command[0]}", command[1], qos=1).wait_for_publish(10)
            sent["cases"] += 1
            sent["new"] += 1

        invariants()
        send_reading()
        send_timestamp()
        send_command()
        send_number_text()
        send_text_timestamp()
        send_arguments()
        invariants()
        # known good alerts after all that (the drawn commands may have set any valid threshold: reset it first)
        sender.publish(f"{BASE}/cmd/reset", raw({"id": "back", "sensor": "line1"}), qos=1).wait_for_publish(10)
        assert collector.wait_for(lambda: any(r.get("request_id") == "back" and r["ok"]
                                              for r in collector.json("/cmd/reset/result")), 30)
        for i in range(50):
            sender.publish(f"{BASE}/sensors/line1/reading", raw({"ts": good_ts(i), "values": [0.5, 0.25]}),
                           qos=1).wait_for_publish(10)
            sent["good_readings"] += 1
        assert collector.wait_for(lambda: len(good_alerts(collector)) >= 50, 60)
        invariants()
    finally:
        sender.disconnect()
        sender.loop_stop()
        code = agent.stop()
        collector.close()
    assert sent["cases"] >= 3500 * SCALE and sent["new"] >= 200 * SCALE
    assert code == 0
    output = agent.output()
    assert "Traceback" not in output, output[output.index("Traceback") - 500:][:3000]
    good = good_alerts(collector)
    assert sorted(good) == sorted(good_ts(i) for i in range(50))  # exactly once each
    assert len({a["id"] for a in collector.json("/anomaly")}) == len(collector.json("/anomaly"))
    validated = 0
    for suffix, schema in TOPIC_SCHEMA.items():
        validator = jsonschema.Draft202012Validator(SCHEMAS[schema])  # built once: 10,000 payloads in the soak
        for topic, payload, _ in collector.messages:
            if topic.endswith(suffix):
                validator.validate(json.loads(payload))
                validated += 1
    assert max(rss) - min(rss) < 25, rss  # flat: no growth with the number of hostile inputs
    print(f"hostile campaign: {sent['cases']} cases ({sent['new']} integers/timestamps/command arguments as text); "
          f"{validated} JSON payloads validated against their schemas, 0 tracebacks; rss {min(rss):.0f}-"
          f"{max(rss):.0f} MB")


# --- config values, with an oracle: accepted exactly when valid ---------------------------------------------------
RULES: dict[tuple[str, ...], Any] = {  # key -> whether a value must be accepted
    ("stats_interval",): lambda v: _number(v) and math.isfinite(v) and 0.1 <= v <= 3600,
    ("queue_size",): lambda v: _int(v) and 1 <= v <= 1_000_000,
    ("mqtt", "port"): lambda v: _int(v) and 1 <= v <= 65535,
    ("mqtt", "reconnect_min"): lambda v: _number(v) and math.isfinite(v) and 0 < v <= 60,
    ("mqtt", "keepalive"): lambda v: _int(v) and 5 <= v <= 3600,
    ("mqtt", "base_topic"): lambda v: isinstance(v, str) and _topic(v.replace("{device_id}", "x")) and
    v.replace("{device_id}", "") .count("{") == 0 and v.replace("{device_id}", "").count("}") == 0,
    ("sensor", 0, "threshold"): lambda v: _number(v) and math.isfinite(v) and 0 < v <= FLOAT32_MAX,
    ("sensor", 0, "rate"): lambda v: _number(v) and math.isfinite(v) and v >= 0,
    ("camera", 0, "fps"): lambda v: _number(v) and math.isfinite(v) and v >= 0,
    ("series", 0, "future_tolerance"): lambda v: _number(v) and math.isfinite(v) and v > 0,
}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (not isinstance(v, int) or abs(v) < 2**1000)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _topic(v: str) -> bool:
    return bool(v) and not any(c in v for c in "+#\0") and not v.startswith("$") and "" not in v.split("/") \
        and len(v.encode()) <= 1024


config_values = st.one_of(st.floats(), st.integers(-10**6, 10**6), st.booleans(), st.text(max_size=20),
                          st.sampled_from(["edgepipe/{device_id}", "a/+/b", "x/#", "{nope}", "a//b", "$SYS/x", "{0}",
                                           "edgepipe/{device_id}/{device_id}", "ok/topic"]))


@settings(CAMPAIGN, max_examples=800 * SCALE)
@given(st.sampled_from(sorted(RULES, key=str)), config_values)
def test_config_value_is_accepted_exactly_when_valid(key: tuple, value: Any) -> None:
    data: dict[str, Any] = {"camera": [{"name": "c", "source": "picamera2"}], "sensor": [{"name": "s"}],
                            "series": [{"name": "a"}]}
    node = data
    for part in key[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[key[-1]] = value
    if key == ("mqtt", "reconnect_min"):
        data["mqtt"]["reconnect_max"] = 60.0
    try:
        parse_config(data)
        accepted = True
    except ConfigError as exc:
        accepted = False
        assert str(key[-1]) in str(exc)
    assert accepted == bool(RULES[key](value)), (key, value)


# --- manifests: a mutated manifest is a ManifestError naming the problem, never anything else ---------------------
MANIFEST = json.loads((MODELS_DIR / "manifest.json").read_text())
PATHS = [("models", name, *rest) for name in ("autoencoder", "lstm", "cnn") for rest in (
    ("postprocess", "threshold"), ("preprocess", "offset"), ("preprocess", "scale"), ("preprocess", "window"),
    ("preprocess", "features"), ("postprocess", "labels"), ("postprocess", "state"), ("preprocess", "look_back"),
    ("inputs", 0, "shape"), ("outputs", 0, "scale"), ("file",), ("sha256",), ("task",))]


@pytest.fixture(scope="module")
def models_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for path in MODELS_DIR.glob("*.tflite"):
        (folder / path.name).symlink_to(path)
    return folder


@settings(CAMPAIGN, max_examples=700 * SCALE)
@given(st.sampled_from(PATHS), json_junk)
def test_mutated_manifest_is_refused_with_a_reason_or_runs(models_copy: Path, path: tuple, value: Any) -> None:
    data = copy.deepcopy(MANIFEST)
    node = data
    for part in path[:-1]:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and \
                part < len(node):
            node = node[part]
        else:
            return
    if isinstance(node, (dict, list)):
        node[path[-1]] = value
    (models_copy / "manifest.json").write_text(json.dumps(data, allow_nan=True))
    pipeline = {"autoencoder": {"sensor": [{"name": "s"}]}, "lstm": {"series": [{"name": "a"}]},
                "cnn": {"camera": [{"name": "c", "source": "picamera2"}]}}[path[1]]
    config = parse_config({"models_dir": str(models_copy), "state_dir": str(models_copy / "state"), **pipeline})
    try:
        load_models(config)
    except ManifestError as exc:
        assert str(exc)
