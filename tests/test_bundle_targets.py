"""Issue 26 (bundles for a group) and issue 24 items 1, 8, 9: whom a signed bundle is for, and which versions a
device takes. Against a real mosquitto and a real agent (in this process: seconds, not a subprocess start each);
bundles written by `fleet/bundle.py` and shipped by `fleet/ship.py`, as in tests/test_update.py."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.agent import Agent
from edge.config import load_config
from edge.update.bundle import FORMAT, BundleRefused, Descriptor, open_bundle, parse_trusted, read_descriptor
from edge.update.targets import Targets, parse_targets
from fleet.bundle import descriptor, public_key_text, write_bundle
from fleet.cli import main as fleet_main
from fleet.ship import Shipper
from fleet.ship import main as ship_main
from tests.helpers.mqtt import Broker, publish
from tests.test_update import BASE, CHUNK, DEVICE, SCHEMAS, Setup, subset, wait_pointer


def format1(setup: Setup, version: str, device: str | None) -> Path:
    """A bundle as the first format wrote it (one `device`), signed by the trusted key."""
    models = subset(setup.tmp / f"export-{version}")
    data = descriptor(models, version, None, None)
    del data["targets"]
    data.update(format=1, device=device)
    out = setup.tmp / f"{version}.tar"
    write_bundle(out, models, setup.key, version, describe=data)
    return out


@contextlib.contextmanager
def running(setup: Setup) -> Iterator[Agent]:
    agent = Agent(load_config(setup.config))
    agent.start()
    try:
        assert agent.link.connected.wait(10)
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def shed(broker: Broker, tmp_path: Path):
    """The agent `shed`, in the groups `sheds` and `north`, with updates on (a probation no test waits out)."""
    setup = Setup(tmp_path, broker.port, probation_s=300, top='groups = ["sheds", "north"]\n')
    with running(setup):
        yield setup


def shipped(setup: Setup, bundle: Path) -> dict[str, Any]:
    result = setup.ship(bundle)
    jsonschema.validate(result, SCHEMAS["update_progress"], format_checker=jsonschema.FormatChecker())
    return result


def test_a_bundle_installs_only_on_the_devices_or_group_it_names(shed: Setup) -> None:
    refused = {"other devices": shed.bundle("v-others", device=None, targets=Targets(devices=("barn", "kitchen"))),
               "another group": shed.bundle("v-barns", device=None, targets=Targets(group="barns")),
               "format 1, another device": format1(shed, "v-old-other", "barn")}
    for what, bundle in refused.items():
        result = shipped(shed, bundle)
        assert (result["state"], result["reason"]) == ("refused", "not_a_target"), (what, result)
        assert shed.pointer() == {}, what
    installs = {"named among others": shed.bundle("v1", device=None, targets=Targets(devices=("barn", DEVICE))),
                "its group": shed.bundle("v2", device=None, targets=Targets(group="north")),
                "any device": shed.bundle("v3", device=None),
                "format 1, this device": format1(shed, "v4", DEVICE),
                "format 1, any device": format1(shed, "v5", None)}
    for what, bundle in installs.items():
        result = shipped(shed, bundle)
        assert result["state"] == "installed", (what, result)
        assert shed.pointer()["version"] == result["version"], what


def test_the_descriptor_names_its_targets_and_follows_the_schema(tmp_path: Path) -> None:
    setup = Setup(tmp_path, 1)
    for targets, expected in ((Targets(devices=("a", "b-2")), {"devices": ["a", "b-2"]}),
                              (Targets(group="sheds"), {"group": "sheds"}), (None, None)):
        data = json.loads(json.dumps(descriptor(subset(tmp_path / f"m{len(str(expected))}"), "v1", None, targets)))
        assert data["format"] == FORMAT == 2 and data["targets"] == expected and "device" not in data
        jsonschema.validate(data, SCHEMAS["update_bundle"])
    old = json.loads(json.dumps({**data, "format": 1, "device": "a"}))
    del old["targets"]
    jsonschema.validate(old, SCHEMAS["update_bundle"])  # format 1 still describes a bundle
    trusted = parse_trusted(public_key_text(setup.key))
    assert open_bundle(format1(setup, "v9", "a"), trusted, "a").targets == Targets(devices=("a",))
    write_bundle(tmp_path / "g.tar", subset(tmp_path / "g"), setup.key, "v10", targets=Targets(group="sheds"),
                 allow_downgrade=True)
    seen = read_descriptor(tmp_path / "g.tar")  # what a rollout reads before shipping
    assert (seen.version, seen.targets, seen.allow_downgrade) == ("v10", Targets(group="sheds"), True)
    with pytest.raises(BundleRefused, match="not_a_bundle"):
        read_descriptor(tmp_path / "agent.toml")


@pytest.mark.parametrize("text, expected", [
    ("pi-1", Targets(devices=("pi-1",))), ("a,b,c", Targets(devices=("a", "b", "c"))),
    ("group:sheds", Targets(group="sheds")), ("all", None)])
def test_to_reads_devices_a_group_or_all(text: str, expected: Targets | None) -> None:
    assert parse_targets(text) == expected


@pytest.mark.parametrize("args, message", [
    (["--to", "group:Sheds"], "--to: group 'Sheds': expected 1-32 lower-case"),
    (["--to", "a,,b"], "--to: device '': expected"),
    (["--to", "a,a"], "named twice"),
    (["--to", "a,all"], "'all' stands alone"),
    (["--to", "pi/1"], "device 'pi/1': expected"),
    (["--device", "a b"], "--device: device 'a b': expected"),
    (["--to", "a", "--device", "b"], "not allowed with argument"),
])
def test_bad_targets_are_refused_at_bundle_time(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                                message: str) -> None:
    """Before the key is read: the key file here does not exist."""
    with pytest.raises(SystemExit) as exit_:
        fleet_main(["bundle", "--key", str(tmp_path / "k"), "--version", "v1", *args, str(tmp_path / "out.tar")])
    said = f"{exit_.value.code} {capsys.readouterr().err}"
    assert message in said, said
    assert not (tmp_path / "out.tar").exists()


def promote(setup: Setup) -> None:
    publish(setup.port, f"{BASE}/cmd/promote", [b'{"id": "p"}'])
    assert wait_pointer(setup, "active"), setup.pointer()


def test_a_replayed_bundle_of_a_superseded_version_is_judged_again_not_answered_installed(
        shed: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24 item 1, its exact reproduction: v1 (--replaces factory) promoted, v2 (--replaces v1) promoted, v1
    shipped again. The updater answered from its per-run verdict cache: `installed`, exit 0, while v2 ran."""
    v1 = shed.bundle("v1", replaces="factory")
    assert shipped(shed, v1)["state"] == "installed"
    promote(shed)
    assert shipped(shed, shed.bundle("v2", replaces="v1"))["state"] == "installed"
    promote(shed)
    code = ship_main(["--broker", f"127.0.0.1:{shed.port}", "--device", DEVICE, "--chunk-kb", "4", "--timeout", "20",
                      str(v1)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and (result["state"], result["reason"]) == ("refused", "replaces_mismatch"), (code, result)
    assert shed.pointer()["version"] == "v2" and shed.pointer()["state"] == "active"
    again = shipped(shed, shed.tmp / "v2.tar")  # the bundle in use is still answered `installed`, nothing stored
    assert (again["state"], again["version"], again["detail"]) == ("installed", "v2", "already installed"), again


def test_versions_are_ordered_by_creation_and_going_back_needs_allow_downgrade(shed: Setup) -> None:
    """Issue 24 item 8: a bundle made without --replaces (the default) installed over any version."""
    old = shed.bundle("v0")  # made first: created before v2
    back = shed.bundle("v0-back", allow_downgrade=True)
    assert shipped(shed, shed.bundle("v2"))["state"] == "installed"
    result = shipped(shed, old)
    assert (result["state"], result["reason"]) == ("refused", "downgrade"), result
    assert "--allow-downgrade" in result["detail"] and shed.pointer()["version"] == "v2"
    other_v2 = shed.bundle("v2", models=shed.tmp / "export-v2")  # the same name, another bundle: never "installed"
    result = shipped(shed, other_v2)
    assert (result["state"], result["reason"]) == ("refused", "version_conflict"), result
    result = shipped(shed, back)
    assert (result["state"], result["version"]) == ("installed", "v0-back"), result
    assert shed.pointer()["version"] == "v0-back"


def test_the_version_factory_is_refused_at_bundle_time_and_at_the_device(shed: Setup) -> None:
    """Issue 24 item 9: `factory` names the models installed with the agent (`--replaces factory`, `model/...`)."""
    for name in ("factory", "Factory"):
        with pytest.raises(SystemExit, match="reserved for the models installed with the agent"):
            shed.bundle(name)
    models = subset(shed.tmp / "export-forged")
    data = {**descriptor(models, "v1", None, None), "version": "factory"}  # signed by the trusted key all the same
    write_bundle(shed.tmp / "forged.tar", models, shed.key, "v1", describe=data)
    result = shipped(shed, shed.tmp / "forged.tar")
    assert (result["state"], result["reason"]) == ("refused", "not_a_bundle") and "reserved" in result["detail"]
    assert shed.pointer() == {}


def fresh_verdict(setup: Setup, bundle: Path) -> dict[str, Any]:
    """Every chunk sent, whatever the retained verdict says, and the device's new answer (not the retained one)."""
    sender = Shipper("127.0.0.1", setup.port, BASE, bundle, CHUNK)
    try:
        assert sender.subscribed.wait(10) and sender.wait(5, lambda: sender.progress is not None)
        sender.progress = None  # forget the retained one (`send` stops at a final verdict)
        sender.send(list(range(sender.count)))
        assert sender.wait(20, sender.final), sender.progress
        return sender.progress or {}
    finally:
        sender.close()


def test_verdicts_across_restarts_describe_what_runs(broker: Broker, tmp_path: Path) -> None:
    """The same class as item 1, across restarts (the verdict cache is empty). After a rollback the retained
    `installed` from the run before must not stand, or the shipper (which trusts it) answers `installed` for
    v1 without a word to the device while the factory models run; and the bundle that runs, judged afresh
    in a new run, is `installed`, not refused for not replacing what runs now."""
    setup = Setup(tmp_path, broker.port, probation_s=300)
    v1 = setup.bundle("v1", replaces="factory")
    with running(setup):
        assert shipped(setup, v1)["state"] == "installed"
    with running(setup):
        publish(broker.port, f"{BASE}/cmd/rollback", [b'{"id": "r"}'])
        assert wait_pointer(setup, "rolled_back")
        again = shipped(setup, v1)
        assert (again["state"], again["detail"]) == ("installed", "on probation for 300 s"), again
        assert setup.pointer()["version"] == "v1"
    with running(setup):
        again = fresh_verdict(setup, v1)
        assert (again["state"], again["detail"]) == ("installed", "already installed"), again


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=8)


@settings(derandomize=True, database=None, deadline=None, max_examples=200)
@given(st.sampled_from([1, 2, True, "2", None]), json_values, json_values, json_values, json_values)
def test_any_signed_descriptor_fields_are_a_named_refusal_or_a_descriptor(fmt: Any, targets: Any, device: Any,
                                                                          created: Any, allow: Any) -> None:
    """What a key holder may sign is still data: `targets`, `device`, `created`, `allow_downgrade` of any JSON
    type give a Descriptor or `not_a_bundle`, never another exception."""
    data = {"format": fmt, "version": "v1", "files": {"manifest.json": {"sha256": "0" * 64, "size": 1}},
            "targets": targets, "device": device, "created": created, "allow_downgrade": allow}
    try:
        got = Descriptor.from_json(data)
    except BundleRefused as exc:
        assert exc.reason == "not_a_bundle"
        return
    assert got.targets is None or isinstance(got.targets, Targets)
    assert got.allow_downgrade is (allow is True)
    assert got.created_at is None or got.created_at.tzinfo is not None
