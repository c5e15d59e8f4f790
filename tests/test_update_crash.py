"""Issue 16 item 6: a SIGKILL at every step of an update leaves the agent starting with one complete model set.

`EDGEPIPE_CRASH_AT=<step>` makes the agent kill itself (SIGKILL, as a power cut) at that step of
the install (edge/update/store.py STEPS). The agent is then started again without it; it must come
up serving, with the pointer naming a folder whose every file matches its manifest, no half-written
folder left, and its retained `model` state naming the version it runs. A bundle received whole
before the kill is installed on the restart (the chunks are on disk); a rollback killed after its
pointer write comes back rolled back.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from edge.models.manifest import read_manifest, verify_file
from edge.update.store import STEPS
from fleet.ship import Shipper
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, wait_online
from tests.test_update import BASE, CHUNK, Setup, last, serves

EXPECTED = {step: "v2" for step in STEPS} | {"after_rollback_pointer": "factory"}
#: `make test` kills at the steps after which the disk differs (a staging folder, a folder no pointer names, a
#: pointer switched before the swap, a rollback's pointer); `make test-update-crash` at every step (~40 s)
STEPS_RUN = STEPS if os.environ.get("EDGEPIPE_UPDATE_ALL_STEPS") == "1" else \
    ("after_extract", "after_rename", "after_pointer", "after_rollback_pointer")


def consistent(setup: Setup) -> str:
    """The version the pointer names, after checking its folder holds a complete, matching set."""
    pointer = setup.pointer()
    version = pointer.get("version")
    folder = setup.factory if version is None else setup.state / "models" / version
    manifest = read_manifest(folder / "manifest.json")
    assert all(verify_file(entry, folder) for entry in manifest.models.values())
    assert not list((setup.state / "models").glob(".incoming-*")) if (setup.state / "models").exists() else True
    return version or "factory"


@pytest.mark.parametrize("step", STEPS_RUN)
def test_sigkill_at_each_step_of_an_update_leaves_one_complete_model_set(broker: Broker, tmp_path: Path,
                                                                          step: str) -> None:
    setup = Setup(tmp_path, broker.port, probation_s=60)
    bundle = setup.bundle("v2")
    agent = AgentProcess(setup.config, env={"EDGEPIPE_CRASH_AT": step})
    wait_online(broker.port, BASE)
    shipper = Shipper("127.0.0.1", broker.port, BASE, bundle, CHUNK)
    try:
        if step == "after_rollback_pointer":
            assert shipper.run(30)["state"] == "installed"  # type: ignore[index]
            publish(broker.port, f"{BASE}/cmd/rollback", [b"{}"])
        else:
            shipper.send(list(range(shipper.count)))
    finally:
        shipper.close()
    assert agent.wait(30) == -signal.SIGKILL, agent.output()[-2000:]
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(setup.config)
    try:
        wait_online(broker.port, BASE)
        assert collector.wait_for(lambda: last(collector, "/model/sensor/line1").get("version")
                                  == EXPECTED[step], 20), collector.json("/model/sensor/line1")
        assert consistent(setup) == EXPECTED[step]
        assert serves(setup, collector)
    finally:
        agent.stop()
        collector.close()
    assert "Traceback" not in agent.output()
