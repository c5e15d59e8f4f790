"""Issue 16, without a broker: hostile chunks and bundles are refused by name, before anything is written."""

from __future__ import annotations

import ast
import base64
import io
import json
import struct
import tarfile
from pathlib import Path

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.update.bundle import REASONS, BundleRefused, extract, key_id, open_bundle, parse_trusted
from edge.update.chunks import parse_chunk
from edge.update.receiver import ranges
from fleet.bundle import export_subset, public_key_text, write_bundle
from fleet.ship import Shipper
from tests.conftest import MODELS_DIR, ROOT

SCHEMAS = {p.stem: json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.json")}
SHA = "ab" * 32


def chunk(head: dict, data: bytes) -> bytes:
    raw = json.dumps(head).encode()
    return struct.pack(">I", len(raw)) + raw + data


@pytest.mark.parametrize("payload, message", [
    (b"", "shorter than its header length"),
    (struct.pack(">I", 10**6) + b"{}", "header length 1000000 is impossible"),
    (chunk({"bundle": "x", "size": 1, "chunk": 1, "index": 0, "count": 1}, b"a"), "expected the bundle's sha256"),
    (chunk({"bundle": SHA, "size": 10, "chunk": 4, "index": 0, "count": 2}, b"aaaa"), "inconsistent"),
    (chunk({"bundle": SHA, "size": 10, "chunk": 4, "index": 3, "count": 3}, b"aa"), "inconsistent"),
    (chunk({"bundle": SHA, "size": 10, "chunk": 4, "index": 2, "count": 3}, b"aaa"), "carries 3 bytes, expected 2"),
    (chunk({"bundle": SHA, "size": 10, "chunk": 2**21, "index": 0, "count": 1}, b"a" * 10), "inconsistent"),
    (chunk({"bundle": SHA, "size": True, "chunk": 4, "index": 0, "count": 3}, b"a"), "must be integers"),
])
def test_malformed_chunks_are_refused_naming_the_problem(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_chunk(payload)


def test_ranges_compress_held_indices() -> None:
    assert ranges({5, 0, 1, 2, 7, 8}) == [[0, 2], [5, 5], [7, 8]]
    assert ranges(set()) == []


def test_a_bundle_and_its_chunks_follow_their_schemas(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    models = export_subset(MODELS_DIR, tmp_path / "m", ("autoencoder",))
    descriptor = write_bundle(tmp_path / "b.tar", models, key, "v1", device="pi")
    jsonschema.validate(descriptor, SCHEMAS["update_bundle"])
    shipper = Shipper.__new__(Shipper)  # only the chunk builder: no broker here
    shipper.path, shipper.chunk, shipper.size = tmp_path / "b.tar", 4096, (tmp_path / "b.tar").stat().st_size
    shipper.sha, shipper.count = SHA, -(-shipper.size // 4096)
    parsed = parse_chunk(shipper.payload(shipper.count - 1))
    jsonschema.validate({k: getattr(parsed, k) for k in ("bundle", "size", "chunk", "index", "count")},
                        SCHEMAS["update_chunk"])
    assert parsed.index == shipper.count - 1 and len(parsed.data) == shipper.size - parsed.index * 4096


def evil_bundle(tmp_path: Path, key: Ed25519PrivateKey, name: str, kind: bytes = tarfile.REGTYPE) -> Path:
    """A correctly signed bundle whose list and tar hold `name` (a path that leaves the folder, or a link)."""
    data = b"owned"
    raw = json.dumps({"format": 1, "version": "v1", "files": {"manifest.json": {"sha256": "0" * 64, "size": 1},
                                                             name: {"sha256": "0" * 64, "size": len(data)}}}).encode()
    signer = key_id(base64.b64decode(public_key_text(key)))
    sig = json.dumps({"key_id": signer, "signature": base64.b64encode(key.sign(raw)).decode()}).encode()
    out = tmp_path / "evil.tar"
    with tarfile.open(out, "w") as tar:
        for member, payload, type_ in (("bundle.json", raw, tarfile.REGTYPE), ("bundle.sig", sig, tarfile.REGTYPE),
                                       (name, data, kind)):
            info = tarfile.TarInfo(member)
            info.type = type_
            if type_ == tarfile.REGTYPE:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = "/etc/passwd"
                tar.addfile(info)
    return out


@pytest.mark.parametrize("name, kind", [("../escape", tarfile.REGTYPE), ("sub/dir.tflite", tarfile.REGTYPE),
                                        (".hidden", tarfile.REGTYPE), ("link.tflite", tarfile.SYMTYPE)])
def test_a_signed_bundle_naming_a_path_outside_its_folder_or_a_link_is_refused(tmp_path: Path, name: str,
                                                                             kind: bytes) -> None:
    key = Ed25519PrivateKey.generate()
    bundle = evil_bundle(tmp_path, key, name, kind)
    with pytest.raises(BundleRefused) as refused:
        descriptor = open_bundle(bundle, parse_trusted(public_key_text(key)), "pi")
        extract(bundle, descriptor, tmp_path / "out")
    assert refused.value.reason == "not_a_bundle"
    assert not (tmp_path / "escape").exists()


def test_trusted_keys_accept_two_keys_for_a_rotation_and_refuse_garbage() -> None:
    one, two = (public_key_text(Ed25519PrivateKey.generate()) for _ in range(2))
    assert len(parse_trusted(f"{one}, {two}")) == 2
    with pytest.raises(ValueError, match="32 bytes"):
        parse_trusted("AAAA")


def test_a_damaged_pointer_falls_back_to_the_factory_models_and_deletes_no_version(tmp_path: Path) -> None:
    from edge.update.store import ModelStore

    factory = export_subset(MODELS_DIR, tmp_path / "factory", ("autoencoder",))
    store = ModelStore(tmp_path / "state", factory)
    store.commit(export_subset(MODELS_DIR, tmp_path / "state" / "models" / ".incoming-v2", ("autoencoder",)), "v2")
    store.switch("v2", "probation")
    assert store.active_dir() == tmp_path / "state" / "models" / "v2"
    for damaged in ('{"version": "v2", "prev', '{"version": "../../etc"}', '{"version": 2}', '[]'):
        store.pointer_path.write_text(damaged)  # torn, or written by something other than the agent
        assert store.active_dir() == factory, damaged
    store.clean()
    assert (tmp_path / "state" / "models" / "v2" / "manifest.json").is_file()  # kept for a person to look at
    (tmp_path / "state" / "models" / ".incoming-v3").mkdir()
    store.pointer_path.write_text('{"version": null, "previous": null}')
    store.clean()  # a readable pointer naming neither: both go
    assert sorted(p.name for p in (tmp_path / "state" / "models").iterdir()) == ["current.json"]


class Counting:
    """A pipeline as probation sees it: counters, a latency summary and the model's manifest entry."""

    def __init__(self, kind: str = "sensor") -> None:
        from edge.models.manifest import read_manifest

        self.kind, self.name = kind, "line1"
        self.counters = {"processed": 0, "errors": 0, "published": 0}
        self.lat: dict = {"count": 0}
        self.model = type("Scorer", (), {"entry": read_manifest(MODELS_DIR / "manifest.json").get("autoencoder")})

    def stats(self) -> dict:
        return dict(self.counters)

    def latency(self) -> dict:
        return dict(self.lat)


@pytest.mark.parametrize("change, verdict", [
    ({"processed": 100, "errors": 2}, None),  # two failures: not evidence
    ({"processed": 20, "errors": 3}, "invoke_errors: 3 of 23"),
    ({"processed": 100, "published": 8}, None),  # 4 alerting readings in 100: fewer than min_alerts
    ({"processed": 100, "published": 12}, "alert_rate: at least 6 alerting readings in 100"),  # 6%, chance 6e-4
    ({"processed": 50, "published": 14}, "alert_rate: at least 7 alerting readings in 50"),
    ({"processed": 1000, "published": 60}, None),  # 3%: under the 5x bound
])
def test_probation_bounds_need_evidence_before_they_convict(change: dict, verdict: str | None) -> None:
    from edge.update.config import UpdateConfig
    from edge.update.probation import Probation, baselines, expected_alert_rate

    pipeline = Counting()
    assert expected_alert_rate(pipeline.model.entry) == 0.01  # the committed autoencoder's false_alert_rate_test
    probation = Probation.begin(UpdateConfig(probation_s=60), [pipeline], baselines([pipeline]))
    pipeline.counters.update(change)
    reason = probation.breach()
    assert (reason is None) if verdict is None else (verdict in (reason or "")), reason


class Episodic(Counting):
    """A sensor on the episode rule as probation sees it: its counters and its rule's `stats.quality` (a real
    `EpisodeRun` for a plan of `per_day` false episodes a day at 5-minute readings)."""

    def __init__(self, per_day: float) -> None:
        from edge.alerts.episode import EpisodePlan
        from edge.alerts.episodic import episode_alerts

        super().__init__()
        alerts = {"period_s": 300.0, "episode": EpisodePlan.for_period(300.0, per_day).to_json()}
        self.run = episode_alerts({"alerts": alerts}, "autoencoder")

    def quality(self) -> dict:
        return self.run.summary()


@pytest.mark.parametrize("per_day, readings, episodes, verdict", [
    (0.1, 1152, 6, "alert_rate: 6 alert episodes in 4 days (1.5/day)"),  # 3 alerting readings as messages count
    (0.1, 288, 4, None),  # 40x the plan in a day, but 4 pages: fewer than min_alerts
    (0.1, 8640, 5, None),  # 5 pages in 30 days: 1.7x the plan
    (20.0, 100, 12, None),  # 35 a day against 20 planned: within 5x (as messages: 6% alerting readings, 6x 1%)
])
def test_probation_judges_the_episode_rule_by_its_episodes_per_day(per_day: float, readings: int, episodes: int,
                                                                  verdict: str | None) -> None:
    """One message per episode, planned per day: counting alerting readings against the k-of-n rate would acquit
    a model paging 15x its plan and convict one within its bound."""
    from edge.update.config import UpdateConfig
    from edge.update.probation import Probation, baselines

    pipeline = Episodic(per_day)
    probation = Probation.begin(UpdateConfig(probation_s=60), [pipeline], baselines([pipeline]))
    pipeline.counters.update({"processed": readings, "published": episodes})  # an anomaly message per onset
    pipeline.run.readings, pipeline.run.episodes = readings, episodes  # days: readings x the plan's period
    reason = probation.breach()
    assert (reason is None) if verdict is None else (verdict in (reason or "")), reason
    assert pipeline.quality()["plan_contradicted"] is (verdict is not None)  # stats.quality flags the same plans


def test_probation_latency_needs_twenty_invokes_and_a_millisecond() -> None:
    from edge.update.config import UpdateConfig
    from edge.update.probation import Baseline, Probation

    pipeline = Counting("camera")
    base = {"camera/line1": Baseline({"processed": 0, "errors": 0, "published": 0}, 0.2)}
    probation = Probation.begin(UpdateConfig(probation_s=60, max_latency_ratio=3.0), [pipeline], base)
    for count, p50, convicted in ((10, 5.0, False), (50, 1.0, False), (50, 0.9, False), (50, 1.5, True)):
        pipeline.lat = {"count": count, "p50_ms": p50}
        assert (probation.breach() is not None) is convicted, (count, p50)


def test_updates_enabled_without_a_trusted_key_are_refused_at_check() -> None:
    """Every bundle would be refused as untrusted: say so when the config is read, not at the first ship."""
    from edge.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"trusted_keys: \[update\] is enabled but trusts no key"):
        parse_config({"update": {"enabled": True}})
    parse_config({"update": {"enabled": False}})  # off: no key needed


def test_every_refusal_reason_is_the_schemas_and_no_other_can_be_raised() -> None:
    """`update/progress` says why a bundle was refused with one of the schema's reasons: REASONS is that list,
    BundleRefused takes no other, and every reason edge/update raises is a literal from it."""
    enum = SCHEMAS["update_progress"]["properties"]["reason"]["anyOf"][0]["enum"]
    assert sorted(REASONS) == sorted(enum)
    with pytest.raises(ValueError, match="not a refusal reason"):
        BundleRefused("cosmic_rays", "a reason nobody can look up")
    raised = set()
    for path in (ROOT / "edge" / "update").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "BundleRefused" and node.args:
                raised |= reasons(node.args[0])
    assert raised and raised <= set(REASONS), raised - set(REASONS)


def reasons(node: ast.expr) -> set[str]:
    """The string a reason expression gives: a literal, or the branches of `a if ... else b`."""
    if isinstance(node, ast.IfExp):
        return reasons(node.body) | reasons(node.orelse)
    return {node.value} if isinstance(node, ast.Constant) else {f"<not a literal: {ast.unparse(node)}>"}
