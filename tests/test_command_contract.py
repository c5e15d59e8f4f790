"""Every command the agent registers, each action ok and refused, over a real mosquitto to a real agent (sensor,
series, a camera with a region, signed updates): every result validates against schemas/command_result.json
(issue 24, item 6 and its acceptance), and malformed arguments of every kind are refused with a reason
(item 11: unknown keys, a 5,000-character label, a capture that names nothing). A command refused before it could
be read (NaN, 1e999, 6,000 digits, 5,000 brackets, over 64 KiB) is answered with its request's `id` all the same;
only a payload that is not JSON has none (`request_id: null`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.pipelines.registry import kinds
from fleet.bundle import export_subset, public_key_text, write_bundle
from fleet.ship import Shipper
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_online, write_config

pytest.importorskip("cv2")
from tools.scene import DOOR, HEIGHT, WIDTH, Scene, record, timeline  # noqa: E402 - needs cv2

BASE = "edgepipe/test"
SCHEMA = json.loads((ROOT / "schemas" / "command_result.json").read_text())
MODELS = ("autoencoder", "lstm", "cnn", "gan")

TWICE = '{"id": "@id", "sensor": "line1", "threshold": 0.5, "sensor": "nope"}'
# (action, body, ok): sent in this order, one result expected for each
BEFORE_UPDATE: list[tuple[str, Any, bool]] = [
    ("threshold", {"sensor": "line1", "threshold": 0.5}, True),
    ("threshold", {"sensor": "nope", "threshold": 0.5}, False),
    ("threshold", {"sensor": "line1", "threshold": -1}, False),
    ("threshold", {"sensor": "line1", "threshold": "high"}, False),
    ("threshold", {"sensor": "line1", "threshold": 0.5, "extra": 1}, False),
    ("threshold", {"sensor": "line1", "threshold": int("9" * 300)}, False),
    ("threshold", {"threshold": 0.5}, False),
    ("calibrate", {"sensor": "line1", "readings": 30}, True),
    ("calibrate", {"sensor": "line1"}, False),
    ("calibrate", {"sensor": "line1", "readings": 30, "seconds": 5}, False),
    ("calibrate", {"sensor": "line1", "readings": 30, "typo": 1}, False),
    ("reset", {"sensor": "line1"}, True),
    ("reset", {"series": "airline"}, True),
    ("reset", {"series": "*"}, True),
    ("reset", {}, False),
    ("reset", {"sensor": "line1", "series": "airline"}, False),
    ("reset", {"series": "nope"}, False),
    ("reset", {"series": "airline", "extra": True}, False),
    ("reload", {}, True),
    ("reload", {"extra": 1}, False),
    ("selftest", {"frames": 5}, None),  # runs; its verdict (ok or a fault found) is the model's
    ("selftest", {"frames": 0}, False),
    ("selftest", {"camera": "nope"}, False),
    ("capture", {"region": "door", "label": "closed", "count": 1, "every": 0}, True),
    ("capture", {}, False),
    ("capture", {"region": "door"}, False),
    ("capture", {"region": "door", "label": "a" * 5000}, False),
    ("capture", {"region": "door", "label": "closed", "bogus": 1}, False),
    ("capture", {"region": "window", "label": "closed"}, False),
    ("capture", {"region": "door", "label": "closed", "count": 10**9}, False),
    ("promote", {}, False),  # nothing on probation
    ("rollback", {}, False),  # nothing to roll back to
    ("nope", {}, False),
    ("threshold", {"sensor": "line1", "threshold": "NaN"}, False),
    # malformed, with an id: the refusal echoes it (`"@id"` becomes the request's id); read past what was refused
    ("threshold", '{"id": "@id", "sensor": "line1", "threshold": NaN}', False),
    ("threshold", '{"sensor": "line1", "threshold": 1e999, "id": "@id"}', False),
    ("threshold", '{"id": "@id", "sensor": "line1", "threshold": ' + "9" * 6000 + "}", False),
    ("calibrate", '{"sensor": "line1", "x": ' + "[" * 5000 + "]" * 5000 + ', "id": "@id"}', False),
    ("reset", '{"id": "@id", "series": "' + "a" * 70000 + '"}', False),  # over the 64 KiB a command may be
    ("reload", '{"id": "@id", "x": -Infinity}', False),
    ("selftest", '{"frames": NaN, "id": "@id"}', False),
    ("capture", '{"id": "@id", "region": "door", "label": "closed", "count": 1e400}', False),
    ("nope", '{"x": [NaN], "id": "@id"}', False),
    ("threshold", TWICE, False),  # the last "sensor" was acted on, silently (a user's trial)
]
NOT_JSON = [b'{"id": "r-cut", "sensor": "line1", "threshold": ', b'{"id": "r-bin", "sensor": "\xff"}']  # no id
AFTER_UPDATE: list[tuple[str, Any, bool]] = [
    ("promote", {"extra": 1}, False),
    ("promote", '{"id": "@id", "x": NaN}', False),
    ("rollback", '{"x": ' + "[" * 5000 + "]" * 5000 + ', "id": "@id"}', False),
    ("promote", {}, True),
    ("rollback", {}, True),
    ("rollback", {}, False),
]


def camera_table(clip: Path) -> str:
    return (f'[[camera]]\nname = "cam0"\nsource = "opencv:{clip}"\nfps = 5\nloop = true\n[[camera.regions]]\n'
            f'name = "door"\nrect = [{DOOR[0] / WIDTH}, {DOOR[1] / HEIGHT}, {DOOR[2] / WIDTH}, {DOOR[3] / HEIGHT}]\n')


def payload(body: dict[str, Any] | str, request: str) -> str:
    """A body with the request's id: a dict gets `id` first; a text (malformed on purpose) has `"@id"` replaced."""
    return body.replace('"@id"', json.dumps(request)) if isinstance(body, str) else json.dumps({"id": request, **body})


def send(port: int, collector: Collector, commands: list[tuple[str, Any, bool]], first: int) -> list[dict]:
    """Each command with its own request id, then every result; each result validated and its `ok` checked."""
    for i, (action, body, _) in enumerate(commands, first):
        publish(port, f"{BASE}/cmd/{action}", [payload(body, f"r{i}")])
    wanted = {f"r{i}" for i in range(first, first + len(commands))}
    answered = lambda: {r.get("request_id") for r in collector.json("/result")}  # noqa: E731
    assert collector.wait_for(lambda: wanted <= answered(), 60), sorted(wanted - answered())
    results = {r["request_id"]: r for r in collector.json("/result") if r.get("request_id") in wanted
               and r.get("state") not in ("done", "failed", "cancelled")}  # calibrate's second answer comes later
    for i, (action, body, ok) in enumerate(commands, first):
        result = results[f"r{i}"]
        jsonschema.validate(result, SCHEMA)
        assert result["action"] == action
        assert ok is None or result["ok"] is ok, (action, body, result)
        assert result["ok"] or result["error"], result
    return list(results.values())


def test_every_command_ok_and_refused_answers_within_its_schema(broker: Broker, tmp_path: Path) -> None:
    clip = record(Scene(timeline(("closed", 20))), tmp_path / "clip.avi")
    key = Ed25519PrivateKey.generate()
    factory = export_subset(MODELS_DIR, tmp_path / "factory", MODELS)
    config = write_config(
        tmp_path / "agent.toml", broker.port,
        '[[sensor]]\nname = "line1"\n\n[[series]]\nname = "airline"\n\n' + camera_table(clip)
        + f'\n[update]\nenabled = true\ntrusted_keys = "{public_key_text(key)}"\nprobation_s = 600\n',
        models_dir=factory)
    registered = {action for kind in kinds().values() for action in kind.commands} | {
        "reload", "selftest", "rollback", "promote"}
    assert registered <= {action for action, _, _ in BEFORE_UPDATE + AFTER_UPDATE}  # a new command joins here
    collector = Collector(broker.port, [f"{BASE}/cmd/#"])
    agent = AgentProcess(config)
    try:
        wait_online(broker.port)
        results = send(broker.port, collector, BEFORE_UPDATE, 0)
        bundle = tmp_path / "v1.tar"
        write_bundle(bundle, export_subset(MODELS_DIR, tmp_path / "v1", MODELS), key, "v1", "factory", "test")
        shipper = Shipper("127.0.0.1", broker.port, BASE, bundle)
        try:
            verdict = shipper.run(60) or {}
        finally:
            shipper.close()
        assert verdict.get("state") == "installed", verdict
        results += send(broker.port, collector, AFTER_UPDATE, len(BEFORE_UPDATE))
        publish(broker.port, f"{BASE}/cmd/threshold", NOT_JSON)
        nulls = lambda: [r for r in collector.json("/result") if r["request_id"] is None]  # noqa: E731
        assert collector.wait_for(lambda: len(nulls()) >= len(NOT_JSON), 30), nulls()
    finally:
        code = agent.stop()
        collector.close()
    assert code == 0 and "Traceback" not in agent.output(), agent.output()[-3000:]
    by_id = {r["request_id"]: r for r in results}
    capture = by_id[f"r{[a for a, _, _ in BEFORE_UPDATE].index('capture')}"]
    assert capture["dir"].endswith("dataset/closed") and capture["camera"] == "cam0" and capture["count"] == 1
    nothing = by_id[f"r{BEFORE_UPDATE.index(('capture', {}, False))}"]["error"]
    assert "label" in nothing and "cam0 (regions: door)" in nothing, nothing  # says what is needed and what exists
    labels = [b.get("label", "") if isinstance(b, dict) else "" for _, b, _ in BEFORE_UPDATE]
    long_label = by_id[f"r{labels.index('a' * 5000)}"]["error"]
    assert "at most 64" in long_label and len(long_label) < 300, long_label
    # a wrong type is named by the key the sender wrote, in JSON's words (it read "threshold.threshold: expected
    # a float": a user's trial)
    high = by_id[f"r{BEFORE_UPDATE.index(('threshold', {'sensor': 'line1', 'threshold': 'high'}, False))}"]["error"]
    assert high == "threshold: expected a number, got 'high'", high
    twice = by_id[f"r{BEFORE_UPDATE.index(('threshold', TWICE, False))}"]["error"]
    assert twice == "the key 'sensor' appears twice in one object (which one was meant?)", twice
    for i, (_, body, _) in enumerate(BEFORE_UPDATE + AFTER_UPDATE):
        if isinstance(body, dict) and {"extra", "bogus", "typo"} & set(body):
            assert "unknown key" in by_id[f"r{i}"]["error"], by_id[f"r{i}"]
    # a payload that is not JSON has no id to read, even one that began like the others: answered, request_id null
    assert sorted(r["error"][:8] for r in nulls()) == ["not JSON", "not UTF-"], nulls()
