"""Issue 26: `python -m fleet rollout` -- one signed bundle to many real agents in stages, halting by itself.

Real mosquitto (MQTT 5 for the controller), real agents without TensorFlow, the controller as its own process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from argparse import Namespace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema

from edge.models.manifest import sha256_file
from fleet.client import BrokerOptions, connect
from fleet.lock import claim_of, rivals
from fleet.plan import Bound, cohorts
from fleet.rollout import Controller
from tests.conftest import ROOT, requires_package
from tests.helpers.fleet import Fleet, fleet_command, unsigned_bundle
from tests.helpers.isolation import no_tf_env
from tests.helpers.mqtt import Broker, Collector
from tools.demo_update import stream, threshold_for_rate
from tools.rate import shipped_broker


def pointer(fleet: Fleet, device: str) -> dict:
    path = fleet.tmp / device / "state" / "models" / "current.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record(port: int, sha: str) -> dict:
    """The rollout's retained record, checked against its schema (a contract like the agent's payloads)."""
    watcher = Collector(port, [f"_fleet/rollout/{sha[:12]}"])
    watcher.sync()
    [payload] = watcher.matching(sha[:12])
    watcher.close()
    schema = json.loads((ROOT / "schemas" / "rollout_state.json").read_text())
    jsonschema.validate(json.loads(payload), schema, format_checker=jsonschema.FormatChecker())
    return json.loads(payload)


def promoted_stage_by_stage(messages: list[tuple[str, bytes, bool]], stages: list[list[str]], version: str) -> bool:
    """Each device of a stage went `active` on `version` (its probation over) before the next stage's first chunk."""
    events = [(t.split("/")[1], t.endswith("/chunk") or json.loads(p)) for t, p, _ in messages
              if t.endswith("/chunk") or "/model/" in t]
    for earlier, later in zip(stages, stages[1:], strict=False):
        first_chunk = min(i for i, (d, e) in enumerate(events) if d in later and e is True)
        for device in earlier:
            if not any(d == device and e is not True and e["version"] == version and e["state"] == "active"
                       for d, e in events[:first_chunk]):
                return False
    return True


def test_a_bad_bundle_halts_in_the_first_stage_and_its_canaries_run_the_old_model(broker: Broker,
                                                                                  tmp_path: Path) -> None:
    """Two canaries of five: the one fed a normal stream convicts the loud model on probation and rolls back by
    itself; the quiet one passes, and `--on-halt rollback` rolls it back; the other three never see a chunk."""
    names = [f"dev-{i:02d}" for i in range(5)]
    loud, quiet = cohorts(names, [40, 100])[0]
    fleet = Fleet(tmp_path, broker.port, 5, probation_s=1.0, probation={loud: 120.0}).start()
    bad = fleet.bundle("v-loud", threshold=threshold_for_rate(0.15))
    chunks = Collector(broker.port, ["edgepipe/+/update/chunk"])
    stop = threading.Event()
    feed = threading.Thread(target=stream, args=(SimpleNamespace(host="127.0.0.1", port=broker.port),
                                                 f"edgepipe/{loud}/sensors/line1/reading", stop, 200.0))
    feed.start()
    try:
        result = fleet_command("rollout", str(bad), "--to", "all", "--stages", "40,100", "--max-failed", "0",
                               "--on-halt", "rollback", "--chunk-kb", "4", "--broker", f"127.0.0.1:{broker.port}")
    finally:
        stop.set()
        feed.join()
        fleet.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "HALTED: stage 1: 1 of 2 failed (--max-failed 0)" in result.stdout, result.stdout
    assert f"{loud} rolled_back (sensor/line1: alert_rate" in result.stdout, result.stdout
    assert {t.split("/")[1] for t, _, _ in chunks.messages} == {loud, quiet}  # 0 chunks outside the stage
    chunks.close()
    for device in (loud, quiet):
        assert pointer(fleet, device)["version"] is None and pointer(fleet, device)["state"] == "rolled_back"
    assert pointer(fleet, quiet)["reason"] == "commanded (cmd/rollback)"
    for device in set(names) - {loud, quiet}:
        assert pointer(fleet, device) == {}, device
    state = record(broker.port, sha256_file(bad))
    assert state["state"] == "halted" and state["devices"][quiet]["state"] == "rolled_back_on_halt"


def chunk_index(payload: bytes) -> int:
    size = int.from_bytes(payload[:4], "big")
    return int(json.loads(payload[4:4 + size])["index"])


def test_a_good_bundle_reaches_every_device_stage_by_stage_past_a_second_controller_and_a_killed_one(
        broker: Broker, tmp_path: Path) -> None:
    """MQTT 5 on mosquitto. A second controller is refused while the first holds the lock; the first, SIGKILLed
    in stage 2 and started again, carries on from the retained record: no device is shipped the bundle twice."""
    fleet = Fleet(tmp_path, broker.port, 5, probation_s=1.0).start()
    bundle = fleet.bundle("v2")
    rollout = sha256_file(bundle)[:12]
    watch = Collector(broker.port, ["edgepipe/+/update/chunk", "edgepipe/+/model/sensor/line1",
                                    f"_fleet/rollout/{rollout}", f"_fleet/rollout/{rollout}/lock"])
    args = ("rollout", str(bundle), "--to", "all", "--stages", "20,60,100", "--chunk-kb", "4", "--parallel", "2",
            "--broker", f"127.0.0.1:{broker.port}")
    first = subprocess.Popen([sys.executable, "-m", "fleet", *args], env=no_tf_env(), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def latest() -> dict:
        got = [json.loads(p) for t, p, _ in list(watch.messages) if t == f"_fleet/rollout/{rollout}" and p]
        return got[-1] if got else {}

    try:
        assert watch.wait_for(lambda: any(t.endswith("/lock") and p for t, p, _ in watch.messages), 30)
        second = fleet_command(*args)
        assert second.returncode == 3 and "another controller runs this rollout" in second.stderr, second
        # killed in the second stage, with the first stage's device promoted
        assert watch.wait_for(lambda: latest().get("stage") == 1 and any(
            d["state"] in ("shipping", "installed") for d in latest()["devices"].values() if d["stage"] == 1), 60)
        first.kill()
        first.wait(10)
        killed_at = len(watch.messages)
        before = latest()
        done = [d for d, e in before["devices"].items() if e["state"] == "promoted"]
        assert done, before
        again = fleet_command(*args)
        assert again.returncode == 0 and "done: 5 promoted" in again.stdout, again.stdout + again.stderr
    finally:
        if first.poll() is None:
            first.kill()
        fleet.stop()
    after = {t.split("/")[1] for t, _, _ in watch.messages[killed_at:] if t.endswith("/chunk")}
    assert not after & set(done)  # nothing shipped again to a device that had finished
    final = record(broker.port, sha256_file(bundle))
    assert all(final["devices"][d] == before["devices"][d] for d in done)  # the restart carried on, not over
    assert final["state"] == "done" and final["stages"] == cohorts(fleet.devices, [20, 60, 100])
    assert [len(s) for s in final["stages"]] == [1, 2, 2]
    assert promoted_stage_by_stage(watch.messages, final["stages"], "v2")
    for device in fleet.devices:
        assert (pointer(fleet, device)["version"], pointer(fleet, device)["state"]) == ("v2", "active"), device
    for device in fleet.devices:
        indices = [chunk_index(p) for t, p, _ in watch.messages if t == f"edgepipe/{device}/update/chunk"]
        assert len(indices) < 2 * len(set(indices)), (device, indices)  # never the whole bundle twice
        installs = [json.loads(p) for t, p, _ in watch.messages if t == f"edgepipe/{device}/model/sensor/line1"]
        assert sum(1 for m in installs if m["version"] == "v2" and m["state"] == "probation") == 1, device
    watch.close()


def test_a_group_bundle_rolls_out_over_a_nats_cluster_on_mqtt_3_1_1(nats_cluster: Any, tmp_path: Path) -> None:
    """Three agents, one on each NATS node, two in group `barn`; a bundle signed for the group goes to those two
    (`--to group:barn`, read from their retained `info`); the controller on the first node speaks 3.1.1."""
    ports = nats_cluster.mqtt_ports
    fleet = Fleet(tmp_path, ports, 3, probation_s=1.0, groups={"dev-00": ["barn"], "dev-01": ["barn", "shed"]})
    fleet.start()
    bundle = fleet.bundle("v2", to="group:barn")
    try:
        wrong = fleet_command("rollout", str(bundle), "--to", "dev-02", "--mqtt-version", "3.1.1",
                              "--broker", f"127.0.0.1:{ports[0]}")  # refused before anything is sent
        assert wrong.returncode != 0 and "would be refused by ['dev-02']" in wrong.stderr, wrong
        result = fleet_command("rollout", str(bundle), "--to", "group:barn", "--stages", "50,100",
                               "--chunk-kb", "4", "--mqtt-version", "3.1.1", "--broker", f"127.0.0.1:{ports[0]}")
        assert result.returncode == 0 and "done: 2 promoted" in result.stdout, result.stdout + result.stderr
    finally:
        fleet.stop()
    for device in ("dev-00", "dev-01"):
        assert (pointer(fleet, device)["version"], pointer(fleet, device)["state"]) == ("v2", "active"), device
    assert pointer(fleet, "dev-02") == {}


@requires_package("mosquitto")
def test_the_fleet_role_of_the_shipped_acl_is_enough_for_status_and_rollout(tmp_path: Path) -> None:
    """The shipped conf and ACL, each agent logged in as its device id, the commands as user `fleet`."""
    users = {"dev-00": "pw-0", "dev-01": "pw-1", "fleet": "pw-fleet"}
    broker = shipped_broker(tmp_path / "acl", users, devices=["dev-00", "dev-01"]).start()
    fleet = Fleet(tmp_path, broker.port, 2, probation_s=1.0, passwords=users).start(login=("fleet", "pw-fleet"))
    (tmp_path / "fleet-pw").write_text("pw-fleet\n")
    login = ("--broker", f"127.0.0.1:{broker.port}", "--username", "fleet", "--password-file",
             str(tmp_path / "fleet-pw"))
    try:
        status = fleet_command("status", "--json", *login)
        assert status.returncode == 0 and [r["online"] for r in json.loads(status.stdout)] == [True, True], status
        result = fleet_command("rollout", str(fleet.bundle("v2")), "--to", "all", "--stages", "50,100",
                               "--chunk-kb", "4", *login)
        assert result.returncode == 0 and "done: 2 promoted" in result.stdout, result.stdout + result.stderr
        intruder = fleet_command("status", "--json", "--broker", f"127.0.0.1:{broker.port}", "--username", "fleet")
        assert intruder.returncode == 2 and "refused the connection" in intruder.stderr, intruder
    finally:
        fleet.stop()
        broker.stop()


def rival_record(devices: list[str], beat: datetime, state: str = "running") -> dict[str, bytes]:
    """What a live controller of rollout aaaaaaaaaaaa leaves retained: its record and its lock."""
    record = {"v": 1, "rollout": "a" * 12, "bundle": "a" * 64, "version": "v-other", "stages": [devices],
              "max_failed": "0", "stage": 0, "state": state, "devices": {}, "ts": beat.isoformat()}
    lock = {"owner": "o", "host": "ops-1", "pid": 4242, "since": beat.isoformat(), "heartbeat": beat.isoformat()}
    return {f"_fleet/rollout/{'a' * 12}": json.dumps(record).encode(),
            f"_fleet/rollout/{'a' * 12}/lock": json.dumps(lock).encode()}


def test_a_live_rollout_on_the_same_devices_is_a_rival_and_a_dead_or_finished_one_is_not() -> None:
    now = datetime.now(UTC)
    assert rivals(rival_record(["dev-a", "dev-b"], now), "b" * 12, ["dev-b", "dev-c"]) == [
        f"rollout {'a' * 12} (version v-other, pid 4242 on ops-1) is running on dev-b"]
    assert rivals(rival_record(["dev-a"], now), "b" * 12, ["dev-b"]) == []  # other devices
    assert rivals(rival_record(["dev-a"], now - timedelta(seconds=60)), "b" * 12, ["dev-a"]) == []  # dead
    assert rivals(rival_record(["dev-a"], now, "done"), "b" * 12, ["dev-a"]) == []
    assert rivals(rival_record(["dev-a"], now), "a" * 12, ["dev-a"]) == []  # itself (a restart)
    garbage = {f"_fleet/rollout/{'c' * 12}": b"[" * 1000, f"_fleet/rollout/{'c' * 12}/lock": b"[1]"}
    assert rivals(garbage, "b" * 12, ["dev-a"]) == []


def test_a_second_bundle_to_devices_a_live_rollout_holds_is_refused_naming_it(broker: Broker, tmp_path: Path) -> None:
    """Chunks of two bundles interleaved on one device defeat both: the second controller exits 3 before shipping."""
    retained = {f"edgepipe/{d}/status": b"online" for d in ("dev-a", "dev-b")} | rival_record(["dev-a"],
                                                                                             datetime.now(UTC))
    retain(broker.port, retained)
    bundle = unsigned_bundle(tmp_path / "b.tar")
    result = fleet_command("rollout", str(bundle), "--to", "all", "--timeout", "1", "--verdict-timeout", "1",
                           "--broker", f"127.0.0.1:{broker.port}")
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"rollout {'a' * 12} (version v-other, pid 4242 on ops-1) is running on dev-a" in result.stderr


SHARED = {"dev-a": b"online", "dev-b": b"online", "dev-c": b"online"}  # retained statuses: devices a rollout can see


def retain(port: int, topics: dict[str, bytes]) -> None:
    client = connect(BrokerOptions("127.0.0.1", port), "retain")
    for topic, payload in topics.items():
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def claims(messages: list[tuple[str, bytes, bool]]) -> dict[str, tuple[str, str]]:
    """Each rollout's claim, (started, controller), as its record first carried it."""
    found: dict[str, tuple[str, str]] = {}
    for topic, payload, _ in messages:
        record = json.loads(payload) if topic.count("/") == 2 and payload else {}
        if record.get("controller"):
            found.setdefault(record["rollout"], claim_of(record))
    return found


def shipped(messages: list[tuple[str, bytes, bool]]) -> set[str]:
    """The bundles (sha256) whose chunks reached any device."""
    return {json.loads(p[4:4 + int.from_bytes(p[:4], "big")])["bundle"] for t, p, _ in messages
            if t.endswith("/update/chunk")}


def test_two_controllers_started_in_the_same_second_on_a_shared_device_agree_which_one_goes_on(
        broker: Broker, tmp_path: Path) -> None:
    """Two bundles, two controller processes started together, dev-b in both: each claims its devices in its record,
    waits for a claim made at the same instant, and looks again. The smaller (started, controller) ships; the other
    stops with exit 3 naming it, clears the record it never ran, and sends no device a chunk."""
    retain(broker.port, {f"edgepipe/{d}/status": s for d, s in SHARED.items()})
    bundles = [unsigned_bundle(tmp_path / "one.tar", "v-one"), unsigned_bundle(tmp_path / "two.tar", "v-two")]
    ids = [sha256_file(b)[:12] for b in bundles]
    watch = Collector(broker.port, ["_fleet/rollout/+", "edgepipe/+/update/chunk"])
    runs = [subprocess.Popen([sys.executable, "-m", "fleet", "rollout", str(bundle), "--to", to, "--stages", "100",
                              "--max-failed", "0", "--timeout", "1", "--verdict-timeout", "1", "--chunk-kb", "4",
                              "--broker", f"127.0.0.1:{broker.port}"], env=no_tf_env(), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for bundle, to in zip(bundles, ("dev-a,dev-b", "dev-b,dev-c"), strict=True)]  # started in the same second
    outputs = [run.communicate(timeout=120) for run in runs]
    codes = [run.returncode for run in runs]
    assert sorted(c == 3 for c in codes) == [False, True], (codes, outputs)  # exactly one gives way
    loser = codes.index(3)
    winner = 1 - loser
    assert f"another rollout targets the same devices: rollout {ids[winner]}" in outputs[loser][1], outputs[loser]
    assert "is running on dev-b" in outputs[loser][1]
    assert codes[winner] == 1 and "HALTED" in outputs[winner][0], outputs[winner]  # it ran: no agent answered
    made = claims(watch.messages)  # both claimed, in their records, before either looked
    said = re.search(r"this controller: started (\S+), id ([0-9a-f]{32})", outputs[loser][1])
    assert said and made[ids[loser]] == said.groups(), (made, outputs[loser])
    assert made[ids[winner]] < made[ids[loser]], made  # the rule both applied, not who looked first
    assert shipped(watch.messages) == {sha256_file(bundles[winner])}
    watch.close()
    retained = Collector(broker.port, ["_fleet/rollout/+"])
    retained.sync()
    assert {t.rsplit("/", 1)[1] for t, p, _ in retained.messages if p} == {ids[winner]}  # the loser's plan cleared
    retained.close()


class Lockstep(Controller):
    """A controller that reaches its claim at the same instant as the other one: each reads the records before the
    other can have written -- the race a check alone loses, made certain."""

    together = threading.Barrier(2)

    def contest(self, fresh: bool) -> bool:
        self.together.wait(60)
        return super().contest(fresh)


def test_two_controllers_claiming_at_the_same_instant_both_see_both_claims_and_one_goes_on(
        broker: Broker, tmp_path: Path) -> None:
    retain(broker.port, {f"edgepipe/{d}/status": s for d, s in SHARED.items()})
    codes: dict[int, int] = {}
    controllers = []
    for i, to in enumerate(("dev-a,dev-b", "dev-b,dev-c")):
        args = Namespace(bundle=unsigned_bundle(tmp_path / f"{i}.tar", f"v-{i}"), to=to, stages=[100.0],
                         max_failed=Bound.parse("0"), on_halt="stop", parallel=2, timeout=1.0, verdict_timeout=1.0,
                         chunk_kb=4, prefix="edgepipe")
        controllers.append(Lockstep(BrokerOptions("127.0.0.1", broker.port), args))
    threads = [threading.Thread(target=lambda i=i: codes.setdefault(i, controllers[i].run())) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(c == 3 for c in codes.values()) == [False, True], codes
    winner = next(i for i, c in codes.items() if c != 3)
    mine = [(c.state.started, c.state.controller) for c in controllers]  # type: ignore[union-attr]
    assert mine[winner] == min(mine), (codes, mine)
