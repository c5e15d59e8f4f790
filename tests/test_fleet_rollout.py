"""Issue 26: `python -m fleet rollout` -- one signed bundle to many real agents in stages, halting by itself.

Real mosquitto (MQTT 5 for the controller), real agents without TensorFlow, the controller as its own process.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.models.manifest import sha256_file
from fleet.plan import cohorts
from tests.helpers.fleet import Fleet, fleet_command
from tests.helpers.mqtt import Broker, Collector


def pointer(fleet: Fleet, device: str) -> dict:
    path = fleet.tmp / device / "state" / "models" / "current.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record(port: int, sha: str) -> dict:
    watcher = Collector(port, [f"_fleet/rollout/{sha[:12]}"])
    watcher.sync()
    [payload] = watcher.matching(sha[:12])
    watcher.close()
    return json.loads(payload)


def test_a_good_bundle_reaches_every_device_through_the_stages(broker: Broker, tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, broker.port, 4, probation_s=1.0).start()
    bundle = fleet.bundle("v2")
    chunks = Collector(broker.port, ["edgepipe/+/update/chunk", "edgepipe/+/model/sensor/line1"])
    try:
        result = fleet_command("rollout", str(bundle), "--to", "all", "--stages", "25,50,100", "--chunk-kb", "4",
                               "--broker", f"127.0.0.1:{broker.port}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "done: 4 promoted" in result.stdout, result.stdout
    finally:
        fleet.stop()
    for device in fleet.devices:
        assert (pointer(fleet, device)["version"], pointer(fleet, device)["state"]) == ("v2", "active"), device
    state = record(broker.port, sha256_file(bundle))
    assert state["state"] == "done" and state["stages"] == cohorts(fleet.devices, [25, 50, 100])
    assert [len(s) for s in state["stages"]] == [1, 1, 2]
    # stage by stage: each device of a stage is promoted (its probation over) before the next stage's first chunk
    events = [(t.split("/")[1], t.endswith("/chunk") or json.loads(p)) for t, p, _ in chunks.messages]
    for earlier, later in zip(state["stages"], state["stages"][1:], strict=False):
        first_chunk = min(i for i, (d, e) in enumerate(events) if d in later and e is True)
        for device in earlier:
            assert any(d == device and e is not True and e["version"] == "v2" and e["state"] == "active"
                       for d, e in events[:first_chunk]), (device, later)
    chunks.close()
