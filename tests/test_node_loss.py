"""Issue 26's node-loss acceptance, against three real nats-server nodes and real agents (subprocesses).

Agents spread over the three nodes (agent i's first choice is node i mod 3, then the other two), each raising
an alert per reading from a CSV; one node is SIGKILLed while they run. Asserted: every agent that was on it
is back (connected to another node, its stats say which) within 30 s; every accepted alert arrives by `id` at
a subscriber on another node; and `fleet status` lists every device online (and fresh) within 30 s.
`make test` runs 3 agents; `make cluster` (EDGEPIPE_CLUSTER=1) the issue's 12.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.conftest import MODELS_DIR, requires_package
from tests.helpers.mqtt import AgentProcess, Collector, sensor_csv, wait_for_stats
from tests.helpers.online import LAST, online_devices

AGENTS = 12 if os.environ.get("EDGEPIPE_CLUSTER") == "1" else 3
READINGS, RATE = 80, 4.0  # per agent: 20 s of alerts, one per reading
KILLED = 0  # the node that dies; the subscriber and the status check use node 1
BACK_WITHIN = 30.0


def agent_config(tmp_path: Path, index: int, ports: list[int], csv: Path) -> tuple[Path, Path]:
    order = [ports[(index + k) % len(ports)] for k in range(len(ports))]
    brokers = ", ".join(f'{{host = "127.0.0.1", port = {p}}}' for p in order)
    folder = tmp_path / f"agent{index}"
    folder.mkdir()
    stats = folder / "stats.json"
    config = folder / "agent.toml"
    config.write_text(
        f'device_id = "node-loss-{index}"\nmodels_dir = "{MODELS_DIR}"\nstate_dir = "{folder / "state"}"\n'
        f'stats_interval = 1.0\nstats_file = "{stats}"\n\n[mqtt]\nbrokers = [{brokers}]\nreconnect_min = 0.5\n'
        f'reconnect_max = 2.0\ndiscovery = false\n\n[[sensor]]\nname = "line1"\nsource = "csv:{csv}"\n'
        f'rate = {RATE}\nthreshold = 1e-12\n')  # every reading is an alert: the set is exact
    return config, stats


def stats_of(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@requires_package("nats-server")
def test_agents_survive_losing_a_node_with_every_alert(nats_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    ports = nats_cluster.mqtt_ports
    devices = [f"node-loss-{i}" for i in range(AGENTS)]
    csv = sensor_csv(tmp_path / "line.csv", [(0.5, 0.25)] * READINGS)
    sub = Collector(ports[1], ["edgepipe/+/sensors/+/anomaly"], client_id="counter", clean=False, retry_refused=10)
    configs = [agent_config(tmp_path, i, ports, csv) for i in range(AGENTS)]
    agents = [AgentProcess(config) for config, _ in configs]
    try:
        for agent, (_, stats) in zip(agents, configs, strict=True):
            assert wait_for_stats(stats, lambda s: s.get("connected") and s["pipelines"]["sensor/line1"][
                "published"] > 0, 90), agent.output()[-2000:]
        killed = f"127.0.0.1:{ports[KILLED]}"
        on_killed = [i for i, (_, stats) in enumerate(configs) if stats_of(stats).get("broker") == killed]
        assert on_killed, "no agent was on the node to kill"
        nats_cluster.kill(KILLED)
        began = time.monotonic()
        back: dict[int, float] = {}
        while len(back) < len(on_killed) and time.monotonic() - began < BACK_WITHIN + 5:
            for i in on_killed:
                s = stats_of(configs[i][1])
                if i not in back and s.get("connected") and s.get("broker") not in (None, killed):
                    back[i] = time.monotonic() - began
            time.sleep(0.2)
        assert len(back) == len(on_killed) and max(back.values()) <= BACK_WITHIN, (back, on_killed)
        online: set[str] = set()
        while time.monotonic() - began < BACK_WITHIN and online != set(devices):
            online = online_devices(ports[1], devices)
        assert online == set(devices), (f"online after {time.monotonic() - began:.0f} s: {sorted(online)}",
                                        {d: LAST.get(d) for d in set(devices) - online})
        for agent, (_, stats) in zip(agents, configs, strict=True):  # every reading read and its alert accepted
            assert wait_for_stats(stats, lambda s: s["pipelines"]["sensor/line1"]["published"] == READINGS
                                  and s["outbox_depth"] == 0, 60), agent.output()[-2000:]

        def ids() -> dict[str, set[str]]:
            seen: dict[str, set[str]] = {d: set() for d in devices}
            for m in sub.json("/anomaly"):
                seen[m["device"]].add(m["id"])
            return seen

        assert sub.wait_for(lambda: all(len(v) >= READINGS for v in ids().values()), 60), \
            {d: len(v) for d, v in ids().items()}
        per_device = {d: sorted({m["seq"] for m in sub.json("/anomaly") if m["device"] == d}) for d in devices}
        assert all(seqs == list(range(READINGS)) for seqs in per_device.values())
        print(f"\nnode loss: {AGENTS} agents, {len(on_killed)} on the killed node, back after "
              f"{', '.join(f'{t:.1f}' for t in sorted(back.values()))} s; {AGENTS * READINGS} alerts, none lost")
    finally:
        for agent in agents:
            agent.stop()
        sub.close()
