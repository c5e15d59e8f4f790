"""Fleet benchmarks (issue 26): `fleet status` over N devices' retained state, and a rollout's wall time.

`python -m tools.bench_fleet` (`make bench-fleet`) writes its section of docs/benchmarks.md. The view is
measured against publishers standing in for the devices (each device's retained status, stats, model state,
info and update progress, as an agent leaves them); the rollout against real agents (subprocesses, the
committed autoencoder) on one mosquitto. Both commands run as an operator runs them: their own process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.bundle import export_subset, public_key_text, write_bundle
from fleet.client import BrokerOptions, Retained, device_filters
from fleet.plan import cohorts, now_iso, parse_stages
from tools.bench import replace_section
from tools.broker import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
TITLE = "## Fleet (issue 26: `make bench-fleet`, `python -m tools.bench_fleet`)"


def device_state(device: str) -> dict[str, bytes]:
    """What an agent with one sensor leaves retained under its base (DESIGN, contract 2)."""
    ts = now_iso()
    stats = {"v": 1, "ts": ts, "device": device, "uptime_s": 100.0, "connected": True, "outbox_depth": 0,
             "outbox_dropped": 0, "latency": {}, "pipelines": {"sensor/line1": {"received": 10}}, "healthy": True,
             "problems": [], "rss_mb": 70.0, "cpu_temp_c": 48.5,
             "quality": {"sensor/line1": {"observed_alerts_per_day": 1.0, "expected_false_alerts_per_day": 1.0,
                                          "excess_p_value": 0.5}}}
    model = {"v": 1, "ts": ts, "device": device, "model": "autoencoder", "pipeline": "line1", "kind": "sensor",
             "version": "factory", "sha256": None, "state": "active", "since": None, "reason": None, "previous": None}
    info = {"v": 1, "device": device, "groups": ["bench"], "agent": "bench", "pipelines": {"line1": "sensor"},
            "ts": time.time()}
    return {"status": b"online", "stats": json.dumps(stats).encode(), "model/sensor/line1": json.dumps(model).encode(),
            "info": json.dumps(info).encode()}


def publish_fleet(port: int, count: int) -> None:
    """Every device's retained state, QoS 1, all acknowledged before the view is timed."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(f"edgepipe/dev-{i:05d}/{rest}", payload, qos=1, retain=True)
             for i in range(count) for rest, payload in device_state(f"dev-{i:05d}").items()]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def bench_status(count: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgepipe-bench-fleet-") as tmp:
        broker = Mosquitto(Path(tmp) / "broker", save_every_change=False).start()  # a production autosave
        try:
            publish_fleet(broker.port, count)
            in_process = []
            for _ in range(runs):
                began = time.perf_counter()
                view = Retained(BrokerOptions("127.0.0.1", broker.port), device_filters("edgepipe"), "bench")
                latest = view.settle(quiet=0.5)
                in_process.append(time.perf_counter() - began)
                view.close()
            devices = {t.split("/")[1] for t in latest}
            began = time.perf_counter()
            cli = subprocess.run([sys.executable, "-m", "fleet", "status", "--json", "--broker",
                                  f"127.0.0.1:{broker.port}"], capture_output=True, text=True, cwd=ROOT, check=True)
            command = time.perf_counter() - began
            listed = len(json.loads(cli.stdout))
        finally:
            broker.stop()
    return {"count": count, "devices_seen": len(devices), "messages": len(latest), "in_process": sorted(in_process),
            "command_s": command, "listed": listed}


def agent_config(folder: Path, device: str, port: int, factory: Path, key: str, probation_s: float) -> Path:
    folder.mkdir(parents=True)
    path = folder / "agent.toml"
    path.write_text(f'device_id = "{device}"\nmodels_dir = "{factory}"\nstate_dir = "{folder / "state"}"\n'
                    f'stats_interval = 5.0\n\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n\n'
                    f'[outbox]\npath = "{folder / "outbox.sqlite"}"\n\n[[sensor]]\nname = "line1"\n\n'
                    f'[update]\nenabled = true\ntrusted_keys = "{key}"\nprobation_s = {probation_s}\n')
    return path


def bench_rollout(count: int, probation_s: float, stages: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgepipe-bench-rollout-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker").start()
        key = Ed25519PrivateKey.generate()
        factory = export_subset(ROOT / "models", work / "factory", ("autoencoder",))
        bundle = work / "v2.tar"
        write_bundle(bundle, export_subset(ROOT / "models", work / "v2", ("autoencoder",)), key, "v2")
        agents = []
        try:
            for i in range(count):
                config = agent_config(work / f"a{i}", f"dev-{i:02d}", broker.port, factory, public_key_text(key),
                                      probation_s)
                agents.append(subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            view = Retained(BrokerOptions("127.0.0.1", broker.port), device_filters("edgepipe"), "bench")
            view.wait_for(lambda latest: sum(t.endswith("/status") and p == b"online" for t, p in latest.items())
                          >= count, 120)
            view.close()
            began = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "fleet", "rollout", str(bundle), "--to", "all",
                                     "--stages", stages, "--broker", f"127.0.0.1:{broker.port}"],
                                    capture_output=True, text=True, cwd=ROOT)
            wall = time.perf_counter() - began
        finally:
            for agent in agents:
                agent.terminate()
            for agent in agents:
                agent.wait(30)
            broker.stop()
    return {"count": count, "probation_s": probation_s, "stages": stages, "wall_s": wall,
            "exit": result.returncode, "summary": result.stdout.strip().splitlines()[-1:] or [result.stderr[-200:]]}


def render(status: dict[str, Any], rollout: dict[str, Any]) -> str:
    runs = status["in_process"]
    stages = len(cohorts([f"dev-{i:02d}" for i in range(rollout["count"])], parse_stages(rollout["stages"])))
    return "\n".join([
        TITLE, "",
        f"Measured on this machine ({os.cpu_count()} cores, shared: load average {os.getloadavg()[1]:.1f} over the "
        "5 minutes before the table was written), mosquitto on loopback.", "",
        "| figure | value |", "| --- | --- |",
        f"| `fleet status`: {status['count']:,} devices' retained state ({status['messages']:,} messages, "
        f"publishers standing in for the devices), subscribe to a complete view (marker back + 0.1 s lull), "
        f"in process, {len(runs)} runs | median {runs[len(runs) // 2]:.2f} s (range {runs[0]:.2f} to {runs[-1]:.2f} s),"
        f" {status['devices_seen']:,} devices seen |",
        f"| ... `python -m fleet status --json` as a command (Python start-up, view, {status['listed']:,} rows "
        f"as JSON) | {status['command_s']:.2f} s |",
        f"| `fleet rollout` of one bundle to {rollout['count']} real agents, stages {rollout['stages']}, "
        f"probation_s {rollout['probation_s']:g} (each stage waits for its verdicts: {stages} stages x "
        f"{rollout['probation_s']:g} s of probation are a floor) | {rollout['wall_s']:.1f} s "
        f"(exit {rollout['exit']}: {rollout['summary'][0]}) |", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000, help="devices in the status view")
    parser.add_argument("--runs", type=int, default=5, help="views timed")
    parser.add_argument("--agents", type=int, default=20, help="real agents in the rollout")
    parser.add_argument("--probation", type=float, default=5.0, help="the agents' probation_s")
    parser.add_argument("--stages", default="5,25,100")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    section = render(bench_status(args.devices, args.runs), bench_rollout(args.agents, args.probation, args.stages))
    print(section)
    replace_section(args.out, TITLE, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
