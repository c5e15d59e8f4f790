"""A property test over generated JSON text -- integers of up to 6,000 digits, floats beyond float64 and float32,
NaN/Infinity, nesting 5,000 deep, every JSON type where a number or a name belongs -- fed to the agent's real
parse and dispatch functions: a live sensor and series pipeline's `handle`, the command dispatcher with every
kind's commands, and a model update's own JSON (a chunk header, a signed `bundle.json`, `bundle.sig`). The only
outcome allowed besides success is a refusal with a reason (`InvalidReading`, an `ok: false` result that validates
against its schema, a `BundleRefused` with the update's reason): never another exception (issue 24, acceptance)."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.commands import Commands
from edge.models.loader import ModelLoader
from edge.mqtt.messages import Topics
from edge.numbers import field, loads
from edge.pipelines.publisher import Publisher
from edge.pipelines.registry import Wiring, kinds
from edge.readings import InvalidReading
from edge.update.bundle import BundleRefused, open_bundle, parse_trusted
from edge.update.chunks import parse_chunk
from fleet.bundle import public_key_text, signature_record
from tests.conftest import MODELS_DIR, ROOT

RESULT = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "command_result.json").read_text()))
PROPERTY = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))
KEYS = ["ts", "values", "seq", "sensor", "series", "threshold", "id", "label", "region", "camera", "count", "every",
        "readings", "seconds", "false_alarms_per_day", "frames", "seed", "min_accuracy", "x"]

numbers = st.one_of(
    st.integers().map(str), st.floats().map(json.dumps),
    st.integers(1, 6000).map(lambda n: "9" * n), st.integers(1, 400).map(lambda n: f"-1{'0' * n}.5"),
    st.sampled_from(["1e999", "-1e400", "3.5e38", "-3.5e38", "1e-400", "NaN", "-Infinity", "-0", "1E+308",
                     "9223372036854775808", "1.7e9", "0.000001"]))
leaves = st.one_of(numbers, st.text(max_size=12).map(json.dumps), st.sampled_from(["true", "false", "null"]),
                   st.sampled_from(['"2026-13-01"', '"1949-01"', '"2026-01-31T12:00:00Z"', '"*"', '"line1"',
                                    '"airline"', '"cam0"', '"door"', f'"{"a" * 5000}"']))
json_text = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
    | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5).map(
        lambda d: "{" + ",".join(f'"{k}":{v}' for k, v in d.items()) + "}"),
    max_leaves=16)
depths = st.one_of(st.sampled_from([1000, 2000, 5000]), st.integers(1, 5000))  # 2,000: past the limit, in 4 KiB
deep = depths.flatmap(lambda d: st.sampled_from(["[" * d + "]" * d, '{"a":' * d + "1" + "}" * d,
                                                                '{"values":' + "[" * d + "]" * d + "}"]))
readings = st.one_of(json_text, deep, st.tuples(numbers, st.lists(numbers, max_size=3)).map(
    lambda t: f'{{"ts": {t[0]}, "values": [{",".join(t[1])}]}}'),
    st.lists(numbers, min_size=1, max_size=3).map(",".join))  # a CSV line


@pytest.fixture(scope="module")
def agent_parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A live sensor and series pipeline (real models, real interpreter) and the dispatcher with every command."""
    state = tmp_path_factory.mktemp("state")
    sent: list[Any] = []
    publisher = Publisher(Topics("edgepipe/t"), "t", sent.append, threading.Event(), 0.0)
    loader = ModelLoader(MODELS_DIR, state)
    pipelines = {}
    for section, name in (("sensor", "line1"), ("series", "airline")):
        kind = kinds()[section]
        cfg = kind.config(name=name)
        pipelines[section] = kind.build(cfg, kind.load(cfg, loader), Wiring(publisher, 10, loader))
    commands = Commands(Topics("edgepipe/t"), "t", sent.append, lambda: list(pipelines.values()), lambda: {})
    for section, kind in kinds().items():
        commands.register_kind(section, kind.commands)
    return {"pipelines": pipelines, "commands": commands, "sent": sent}


@PROPERTY
@given(st.sampled_from(["sensor", "series"]), readings)
def test_generated_readings_are_taken_or_refused_with_a_reason(agent_parts: dict[str, Any], kind: str,
                                                                text: str) -> None:
    try:
        agent_parts["pipelines"][kind].handle(text.encode())
    except InvalidReading as exc:
        assert str(exc) and "Traceback" not in str(exc)


@PROPERTY
@given(st.sampled_from(["threshold", "calibrate", "reset", "reload", "capture", "nope"]),
       st.one_of(json_text, deep), st.one_of(st.none(), st.tuples(st.text(max_size=40), st.sampled_from(KEYS[:6]),
                                                                  st.booleans())))
def test_generated_commands_are_answered_within_the_schema(agent_parts: dict[str, Any], action: str, text: str,
                                                           request: tuple[str, str, bool] | None) -> None:
    """`request` (id, key, id first): the text is the value of `key` in an object that carries that `id` --
    refused or not, the answer echoes it."""
    if request is not None:
        fields = [f'"id": {json.dumps(request[0])}', f'"{request[1]}": {text}']
        text = "{" + ", ".join(fields if request[2] else fields[::-1]) + "}"
    sent = agent_parts["sent"]
    sent.clear()
    agent_parts["commands"].handle(action, text.encode())  # any exception but a refusal escapes and fails here
    results = [json.loads(m.payload) for m in sent if m.topic.endswith("/result")]
    assert len(results) == 1
    RESULT.validate(results[0])
    assert results[0]["ok"] or results[0]["error"]
    assert request is None or results[0]["request_id"] == request[0], results[0]


def lenient_id(text: str) -> Any:
    """The reference for `edge.numbers.field`: Python's own parse with every number kept as text (no bound can refuse
    it); "not JSON" when it fails (nesting too deep for it: the caller skips the case)."""
    as_text = lambda token: ("number", token)  # noqa: E731
    try:
        data = json.loads(text, parse_int=as_text, parse_float=as_text, parse_constant=as_text)
    except RecursionError:
        return "too deep"
    except ValueError:
        return "not JSON"
    value = data.get("id") if isinstance(data, dict) else None
    if isinstance(value, tuple):
        try:
            return loads(value[1])
        except ValueError:
            return None
    return value if isinstance(value, str) else None


def members(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f'"{key}":{value}' for key, value in pairs) + "}"


ID_KEYS = ["id", "x", "\\u0069d", "values"]  # "\u0069d" is "id" too, once decoded
values = st.recursive(st.one_of(leaves, st.text(max_size=8).map(json.dumps)), lambda inner: st.one_of(
    st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.lists(st.tuples(st.sampled_from(ID_KEYS), inner), max_size=3).map(members)), max_leaves=12)
objects = st.lists(st.tuples(st.sampled_from(ID_KEYS), values), max_size=4).map(members)  # an "id" at any depth
damaged = st.tuples(objects, st.integers(0, 40), st.sampled_from(["", " ", ",", "}", "]", ":", "x", "]}"])).map(
    lambda t: t[0][:len(t[0]) - t[1]] + t[2])  # cut, and something after


@PROPERTY
@given(st.one_of(objects, damaged, json_text, deep))
def test_the_id_of_a_refused_command_is_what_json_would_read(text: str) -> None:
    """`edge.numbers.field` (the id of a command the bounded parse refused) against Python's own parse of the same text:
    the same id, and none for text that is not JSON -- a cut or damaged object included."""
    expected = lenient_id(text)
    if expected != "too deep":
        assert field(text, "id") == (None if expected == "not JSON" else expected), text[:200]


DESCRIPTOR = '{"format": 2, "version": "v1", "files": {"manifest.json": {"sha256": "%s", "size": 1}}, "metrics": %s}'


def signed_bundle(path: Path, key: Ed25519PrivateKey, descriptor: bytes, signature: bytes | None = None) -> Path:
    """A tar of `bundle.json` = `descriptor`, signed by `key` (or `signature` as `bundle.sig`): what a device holds
    once the chunks are in; only the parse stands between the text and the device."""
    with tarfile.open(path, "w") as tar:
        for name, data in (("bundle.json", descriptor), ("bundle.sig", signature or signature_record(descriptor, key))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    return {"key": key, "trusted": parse_trusted(public_key_text(key)), "path": tmp_path_factory.mktemp("b") / "b.tar"}


@PROPERTY
@given(st.sampled_from(["chunk header", "metrics", "descriptor", "signature"]), st.one_of(json_text, deep))
def test_generated_update_json_is_refused_with_the_updates_reason(signer: dict[str, Any], where: str,
                                                                  text: str) -> None:
    """A chunk header, a descriptor signed by a trusted key (the text as its `metrics`, or as all of it) and a
    signature record: a refusal in words (ValueError for a chunk, `not_a_bundle` / `unsigned` for a bundle), never
    another exception; what is taken holds no NaN or infinity (it would reach probation's figures)."""
    if where == "chunk header":
        head = text.encode()
        with pytest.raises(ValueError, match="chunk"):
            parse_chunk(struct.pack(">I", len(head)) + head)
        return
    descriptor = (DESCRIPTOR % ("0" * 64, text) if where == "metrics" else
                  text if where == "descriptor" else DESCRIPTOR % ("0" * 64, "{}")).encode()
    signature = text.encode() if where == "signature" else None
    try:
        bundle = signed_bundle(signer["path"], signer["key"], descriptor, signature)
        taken = open_bundle(bundle, signer["trusted"], "pi")
    except BundleRefused as exc:
        assert exc.reason == ("unsigned" if where == "signature" else "not_a_bundle"), exc
        assert exc.detail and "Traceback" not in exc.detail
        return
    json.dumps(taken.metrics, allow_nan=False)  # ValueError here: a NaN or an infinity was taken
