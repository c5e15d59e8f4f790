"""Issue 16: model updates over MQTT -- a signed bundle shipped in chunks, verified, installed, on probation.

Everything is real: mosquitto, the agent as a subprocess without TensorFlow, Ed25519 signatures made
with a key generated here, bundles written by `fleet/bundle.py` and shipped by `fleet/ship.py`.
The models are a one-model export (the autoencoder) so a bundle is a few chunks of 4 KiB.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import signal
import struct
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.agent import Agent
from edge.config import load_config
from edge.models.manifest import read_manifest, verify_file
from fleet.bundle import export_subset, public_key_text, signature_record, write_bundle
from fleet.ship import Shipper
from tests.conftest import MODELS_DIR, ROOT
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_online, write_config
from tests.test_device_faults import small_disk  # noqa: F401 - the 3 MiB tmpfs fixture (needs root)
from tools.demo_update import clean_readings, threshold_for_rate

SCHEMAS = {p.stem: json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.json")}
DEVICE = "shed"
BASE = f"edgepipe/{DEVICE}"
CHUNK = 4096


def subset(folder: Path, names: tuple[str, ...] = ("autoencoder",), threshold: float | None = None) -> Path:
    """An export holding only `names`; `threshold` overrides the autoencoder's."""
    return export_subset(MODELS_DIR, folder, names, threshold)


class Setup:
    """A factory export, a trusted key, an agent config with `[update]`, and bundles signed on demand."""

    def __init__(self, tmp_path: Path, port: int, probation_s: float = 2.0, state: Path | None = None,
                 extra: str = "", top: str = "") -> None:
        self.tmp, self.port = tmp_path, port
        self.key, self.other_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        self.factory = subset(tmp_path / "factory")
        self.state = state or tmp_path / "state"
        self.config = write_config(
            tmp_path / "agent.toml", port, '[[sensor]]\nname = "line1"\n\n[update]\nenabled = true\n'
            f'trusted_keys = "{public_key_text(self.key)}"\nprobation_s = {probation_s}\n{extra}\n'
            f'[outbox]\npath = "{tmp_path / "outbox.sqlite"}"\n',
            device=DEVICE, state_dir=self.state, models_dir=self.factory, stats_interval=0.5, top=top)

    def bundle(self, version: str, models: Path | None = None, key: Ed25519PrivateKey | None = None,
               device: str | None = DEVICE, replaces: str | None = None, **kwargs: Any) -> Path:
        models = models or subset(self.tmp / f"export-{version}")
        out = self.tmp / f"{version}.tar"
        write_bundle(out, models, key or self.key, version, replaces, device, **kwargs)
        return out

    def ship(self, bundle: Path, timeout: float = 30.0, stop_after: int | None = None,
             chunk: int = CHUNK) -> dict[str, Any]:
        shipper = Shipper("127.0.0.1", self.port, BASE, bundle, chunk)
        try:
            return shipper.run(timeout, stop_after) or {}
        finally:
            shipper.close()

    def pointer(self) -> dict[str, Any]:
        path = self.state / "models" / "current.json"
        return json.loads(path.read_text()) if path.exists() else {}


def wait_pointer(setup: Setup, state: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if setup.pointer().get("state") == state:
            return True
        time.sleep(0.1)
    return False


def serves(setup: Setup, collector: Collector) -> bool:
    """The sensor still scores readings: an obviously wrong one raises an alert."""
    before = len(collector.matching("/sensors/line1/anomaly"))
    publish(setup.port, f"{BASE}/sensors/line1/reading", [b"[5.0, -5.0]"])
    return collector.wait_for(lambda: len(collector.matching("/sensors/line1/anomaly")) > before, 15)


def last(collector: Collector, suffix: str) -> dict[str, Any]:
    got = collector.json(suffix)
    return got[-1] if got else {}


def test_a_good_bundle_is_shipped_verified_installed_on_probation_then_promoted(broker: Broker,
                                                                                 tmp_path: Path) -> None:
    setup = Setup(tmp_path, broker.port, probation_s=2.0)
    collector = Collector(broker.port, [f"{BASE}/#", "homeassistant/#"])
    agent = AgentProcess(setup.config)
    try:
        wait_online(broker.port, BASE)
        result = setup.ship(setup.bundle("v2"))
        assert result["state"] == "installed", result
        assert result["version"] == "v2"
        assert setup.pointer()["version"] == "v2"
        assert collector.wait_for(lambda: last(collector, "/model/sensor/line1").get("state") == "active"
                                  and last(collector, "/model/sensor/line1")["version"] == "v2", 20)
        states = [m["state"] for m in collector.json("/model/sensor/line1") if m["version"] == "v2"]
        assert states[0] == "probation" and states[-1] == "active"
        assert last(collector, "/model/update")["installed_version"] == "v2"
        assert collector.matching("homeassistant/update/edgepipe_shed/models/config")
        assert collector.matching("homeassistant/button/edgepipe_shed/models_rollback/config")
        assert serves(setup, collector)
        publish(broker.port, f"{BASE}/cmd/rollback", [b'{"id": "r1"}'])  # by hand, after promotion
        assert collector.wait_for(lambda: collector.json("/cmd/rollback/result"), 15)
        assert collector.json("/cmd/rollback/result")[-1]["ok"] is True
        assert setup.pointer()["version"] is None and setup.pointer()["state"] == "rolled_back"
        assert collector.wait_for(lambda: last(collector, "/model/sensor/line1").get("state") == "rolled_back", 10)
        for schema, suffix in (("update_progress", "/update/progress"), ("model_state", "/model/sensor/line1"),
                               ("update_state", "/model/update"), ("command_result", "/cmd/rollback/result")):
            for payload in collector.json(suffix):
                jsonschema.validate(payload, SCHEMAS[schema], format_checker=jsonschema.FormatChecker())
        assert (setup.state / "models" / "v2" / "manifest.json").is_file()  # kept on disk
        assert serves(setup, collector)
        # the retained verdict no longer says "installed": a shipper is not told so, and shipping again installs
        assert collector.wait_for(lambda: last(collector, "/update/progress").get("reason") == "rolled_back", 10)
        again = setup.ship(setup.tmp / "v2.tar")
        assert again["state"] == "installed" and setup.pointer()["version"] == "v2", again
        for version in ("v3", "v4"):  # only the set in use and the one before stay on the SD card
            assert setup.ship(setup.bundle(version))["state"] == "installed"
        assert sorted(p.name for p in (setup.state / "models").iterdir() if p.is_dir()) == ["v3", "v4"]
    finally:
        agent.stop()
        collector.close()
    assert read_manifest(setup.factory / "manifest.json").get("autoencoder")  # the factory set is untouched


def rewritten(setup: Setup, version: str, change: Callable[[str, bytes], bytes]) -> Path:
    """A good bundle, signed, then rewritten member by member through `change(name, data)`."""
    good = setup.bundle(version)
    out = setup.tmp / f"{version}-rewritten.tar"
    with tarfile.open(good) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for info in src.getmembers():
            data = change(info.name, src.extractfile(info).read())  # type: ignore[union-attr]
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


def header(text: str) -> bytes:
    """A chunk message whose JSON header is `text` (and no data)."""
    return struct.pack(">I", len(text)) + text.encode()


def tampered(setup: Setup) -> Path:
    """A model file changed after signing (same length: only the hash can tell)."""
    return rewritten(setup, "v-tampered",
                     lambda name, data: data[:-64] + bytes(64) if name == "autoencoder.tflite" else data)


def bad_signature(setup: Setup) -> Path:
    """The descriptor edited after signing (another version number): the signature no longer matches."""
    return rewritten(setup, "v-badsig",
                     lambda name, data: data.replace(b'"v-badsig"', b'"v-evil00"') if name == "bundle.json" else data)


def truncated(setup: Setup) -> Path:
    good = setup.bundle("v-truncated")
    out = setup.tmp / "truncated.tar"
    out.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return out


def hostile(metrics: str, member: str = "bundle.json") -> Callable[[Setup], Path]:
    """A bundle signed by the trusted key whose `bundle.json` carries `metrics` -- JSON text the bounded parse
    refuses -- among its metrics (or whose `bundle.sig` is that text): only the device's parse stands between it and
    probation's figures."""
    def make(setup: Setup) -> Path:
        signed: list[bytes] = []

        def change(name: str, data: bytes) -> bytes:
            if name == "bundle.json":
                signed.append(data.replace(b'"metrics": {', b'"metrics": {"x": ' + metrics.encode() + b", ", 1)
                              if member == name else data)
                return signed[0]
            if name == "bundle.sig":
                return metrics.encode() if member == name else signature_record(signed[0], setup.key)
            return data

        return rewritten(setup, f"v-hostile-{hashlib.sha256(metrics.encode() + member.encode()).hexdigest()[:8]}",
                         change)
    return make


DEEP = "[" * 5000 + "]" * 5000
HOSTILE = {  # what: the bundle, its refusal reason, the words of the refusal's detail
    "a 6,000-digit integer in the descriptor": (hostile("9" * 6000), "not_a_bundle", "has 6000 digits"),
    "1e999 in the descriptor": (hostile("1e999"), "not_a_bundle", "1e999 is beyond the range"),
    "NaN in the descriptor": (hostile("NaN"), "not_a_bundle", "NaN is not a number"),
    "the descriptor 5,000 deep": (hostile(DEEP), "not_a_bundle", "nested too deeply"),
    "the signature record 5,000 deep": (hostile(DEEP, "bundle.sig"), "unsigned", "nested too deeply"),
}
REFUSALS = {
    "tampered": (tampered, "tampered"),
    "bad signature": (bad_signature, "bad_signature"),
    "wrong key": (lambda s: s.bundle("v-wrongkey", key=s.other_key), "untrusted_key"),
    "other device": (lambda s: s.bundle("v-other", device="pi-kitchen"), "not_a_target"),
    "truncated": (truncated, "truncated"),
    "an old bundle replayed": (lambda s: s.bundle("v-old", replaces="v0"), "replaces_mismatch"),
    "too big": (lambda s: s.bundle("v-big", models=subset(s.tmp / "big", ("autoencoder", "cnn"))), "too_big"),
}


def test_an_install_loads_and_golden_checks_each_model_once(broker: Broker, tmp_path: Path) -> None:
    """The verification loads every model of the bundle (and runs its golden vectors); the swap takes those
    interpreters over: one load per model and install, not one to verify and another to swap."""
    setup = Setup(tmp_path, broker.port, probation_s=60)
    agent = Agent(load_config(setup.config))
    agent.start()
    try:
        at_start = collections.Counter(agent.model_loads)
        assert at_start == {"autoencoder": 1}
        [sensor] = agent.pipelines
        factory_model = sensor.model
        result = setup.ship(setup.bundle("v2"))
        assert result["state"] == "installed", result
        assert agent.model_loads - at_start == {"autoencoder": 1}
        assert sensor.model is not factory_model  # swapped: the interpreter loaded to verify now serves
    finally:
        agent.stop()


def test_bad_bundles_are_each_refused_with_a_named_reason_while_the_old_models_serve(broker: Broker,
                                                                                      tmp_path: Path) -> None:
    setup = Setup(tmp_path, broker.port, extra="max_bundle_mb = 0.25")
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(setup.config)
    try:
        wait_online(broker.port, BASE)
        publish(broker.port, f"{BASE}/update/chunk", [b"", b"\x00\x00\x00\x02{}", b"\xff" * 70000,
                                                      b"\x00\x00\x00\x04null"])  # not chunks at all
        publish(broker.port, f"{BASE}/update/chunk", [header(text) for text in (  # headers no bounded parse takes
            '{"size": ' + "9" * 4000 + "}", '{"size": 1e999}', '{"index": NaN}', "[" * 2000 + "]" * 2000)])
        for what, (make, reason, *words) in {**REFUSALS, **HOSTILE}.items():
            result = setup.ship(make(setup))
            assert result.get("state") == "refused", (what, result)
            assert result["reason"] == reason, (what, result)
            assert all(w in result["detail"] for w in words), (what, result)
            assert setup.pointer() == {}, what  # nothing installed
            assert not list((setup.state / "updates").glob("*.part")), what  # nothing left behind
        assert serves(setup, collector)
        publish(broker.port, f"{BASE}/cmd/rollback", [b'{"id": "r0"}'])  # nothing installed: refused, with why
        assert collector.wait_for(lambda: collector.json("/cmd/rollback/result"), 15)
        refused = collector.json("/cmd/rollback/result")[-1]
        assert refused["ok"] is False and "nothing to roll back to" in refused["error"]
        errors = [e for e in collector.json("/error") if e["component"] == "update"]
        assert errors[0]["reason"].startswith("chunk refused:")  # later ones: in `repeated` (error_interval)
    finally:
        agent.stop()
        collector.close()
    assert "Traceback" not in agent.output()


def test_a_broken_transfer_resumes_after_a_restart_and_a_duplicate_chunk_is_harmless(broker: Broker,
                                                                                      tmp_path: Path) -> None:
    setup = Setup(tmp_path, broker.port, probation_s=60)
    bundle = setup.bundle("v3")
    collector = Collector(broker.port, [f"{BASE}/update/progress"])
    agent = AgentProcess(setup.config)
    try:
        wait_online(broker.port, BASE)
        first = setup.ship(bundle, stop_after=3)
        assert first == {"state": "stopped", "sent": 3, "missing": first["missing"]} and first["missing"] > 0
        assert collector.wait_for(lambda: last(collector, "/progress").get("have") == [[0, 2]], 10)
        agent.stop(signal.SIGKILL)
        agent = AgentProcess(setup.config)
        wait_online(broker.port, BASE)
        shipper = Shipper("127.0.0.1", broker.port, BASE, bundle, CHUNK)
        try:
            shipper.send([0])  # a duplicate of a chunk already held, before the rest
            result = shipper.run(30)
        finally:
            shipper.close()
        assert result and result["state"] == "installed", result
        assert setup.pointer()["version"] == "v3"
        late = len(collector.json("/progress"))
        publish(broker.port, f"{BASE}/update/chunk", [shipper.payload(1)])  # a late duplicate
        assert collector.wait_for(lambda: len(collector.json("/progress")) > late, 10)
        assert last(collector, "/progress")["state"] == "installed"  # the verdict again, nothing stored
        assert not list((setup.state / "updates").glob("*.part"))
        publish(broker.port, f"{BASE}/cmd/promote", [b'{"id": "p1"}'])  # ends the 60 s probation early
        assert wait_pointer(setup, "active"), setup.pointer()
        receiving = [m for m in collector.json("/progress") if m["state"] == "receiving"]
        assert all(m["have"][0][0] == 0 for m in receiving)  # never started again from nothing
    finally:
        agent.stop()
        collector.close()


def test_a_model_raising_the_alert_rate_tenfold_on_a_normal_stream_is_rolled_back_within_probation(
        broker: Broker, tmp_path: Path) -> None:
    setup = Setup(tmp_path, broker.port, probation_s=120)
    bad = setup.bundle("v-loud", models=subset(tmp_path / "loud", threshold=threshold_for_rate(0.15)))
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(setup.config)
    try:
        wait_online(broker.port, BASE)
        publish(broker.port, f"{BASE}/sensors/line1/reading", clean_readings(100))
        assert setup.ship(bad)["state"] == "installed"
        publish(broker.port, f"{BASE}/sensors/line1/reading", clean_readings(300)[100:])
        assert collector.wait_for(lambda: last(collector, "/model/sensor/line1").get("state") == "rolled_back", 30)
    finally:
        agent.stop()
        collector.close()
    state = last(collector, "/model/sensor/line1")
    assert state["version"] == "factory" and state["previous"] == "v-loud"
    assert state["reason"].startswith("sensor/line1: alert_rate:"), state
    assert "rolled back" in last(collector, "/model/update")["release_summary"]
    assert setup.pointer()["state"] == "rolled_back"


def test_a_bundle_that_does_not_fit_the_disk_is_refused_and_the_old_models_serve(
        broker: Broker, tmp_path: Path, small_disk: Path) -> None:  # noqa: F811 - the imported fixture
    setup = Setup(tmp_path, broker.port, state=small_disk / "state")
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(setup.config)
    try:
        wait_online(broker.port, BASE)
        huge = setup.bundle("v-huge", models=subset(tmp_path / "huge", ("autoencoder", "cnn_float32")))
        assert 3 << 20 < 2 * huge.stat().st_size  # the file and its installed copy do not fit in 3 MiB
        result = setup.ship(huge, chunk=64 * 1024)
        assert result.get("state") == "refused" and result["reason"] == "no_space", result
        assert serves(setup, collector)
        assert setup.pointer() == {}
    finally:
        agent.stop()
        collector.close()
    assert all(verify_file(e, setup.factory) for e in read_manifest(setup.factory / "manifest.json").models.values())
