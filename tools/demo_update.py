"""`python -m tools.demo_update` (`make demo-update`): a model update and an automatic rollback, live.

The agent (in this process, committed models, no TensorFlow) scores a normal sensor stream. A key
is generated, the agent trusts it, and two bundles are shipped over MQTT in chunks
(`fleet/ship.py`): `v2`, the same autoencoder, goes on probation and becomes `active`; `v3-loud`,
whose threshold lets 15% of normal readings alert (the manifest promises 1%), is rolled back by the
agent itself within its probation, saying why. The Home Assistant `update` entity's state
(`model/update`) and the retained `model/sensor/line1` are printed as they change.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.config import parse_config
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.pipelines.sensor.scorer import AnomalyScorer
from fleet.bundle import export_subset, public_key_text, write_bundle
from fleet.ship import Shipper
from tools.demo import Watcher, add_broker_args, demo_broker, demo_leftovers

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def clean_readings(count: int) -> list[bytes]:
    """The shipped sensor line's rows marked clean, as JSON readings."""
    rows = [line.split(",") for line in (ROOT / "data" / "sensor-stream.csv").read_text().splitlines()[1:]]
    return [json.dumps([float(r[1]), float(r[2])]).encode() for r in rows if r[3] == "clean"][:count]


def threshold_for_rate(rate: float) -> float:
    """A threshold that lets `rate` of the clean readings alert (the committed one lets about 1% through)."""
    entry = read_manifest(MODELS / "manifest.json").get("autoencoder")
    scorer = AnomalyScorer(entry, TFLiteModel.from_entry(entry, MODELS))
    scores = [scorer.score(np.asarray(json.loads(r), np.float32)) for r in clean_readings(400)]
    return float(np.quantile([s for s in scores if s is not None], 1 - rate))


def agent_config(broker: Any, state_dir: Path, key: Ed25519PrivateKey, probation_s: float) -> Any:
    return parse_config({
        "device_id": "demo", "models_dir": str(MODELS), "state_dir": str(state_dir), "stats_interval": 2.0,
        "mqtt": {"host": broker.host, "port": broker.port, "discovery": True},
        "sensor": [{"name": "line1"}],
        "update": {"enabled": True, "trusted_keys": public_key_text(key), "probation_s": probation_s}})


def stream(broker: Any, topic: str, stop: threading.Event, rate: float) -> None:
    """The normal stream, round and round, until `stop`."""
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    readings = clean_readings(400)
    i = 0
    while not stop.wait(1.0 / rate):
        client.publish(topic, readings[i % len(readings)], qos=1)
        i += 1
    client.disconnect()
    client.loop_stop()


class StatePrinter:
    """Prints `model/update` and `model/sensor/line1` whenever they change."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher, self.seen = watcher, 0

    def show(self) -> list[dict[str, Any]]:
        with self.watcher.lock:
            new = self.watcher.messages[self.seen:]
            self.seen = len(self.watcher.messages)
        for topic, data in new:
            if topic.endswith("/model/update"):
                print(f"  HA update entity: installed {data['installed_version']}, latest {data['latest_version']}"
                      f"{' (' + data['release_summary'][:90] + ')' if data.get('release_summary') else ''}")
            elif "/model/" in topic:
                print(f"  model/sensor/line1: version {data['version']} {data['state']}"
                      f"{' -- ' + data['reason'] if data.get('reason') else ''}")
        return [d for t, d in new if "/model/" in t and not t.endswith("/model/update")]  # per-pipeline states

    def wait_for(self, state: str, version: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(d["state"] == state and d["version"] == version for d in self.show()):
                return True
            time.sleep(0.2)
        return False


def ship(broker: Any, base: str, bundle: Path) -> dict[str, Any]:
    shipper = Shipper(broker.host, broker.port, base, bundle, 16 * 1024)
    try:
        result = shipper.run(30.0) or {}
    finally:
        shipper.close()
    print(f"shipped {bundle.name} ({bundle.stat().st_size} bytes, {shipper.count} chunks): {result.get('state')}"
          f"{' -- ' + str(result.get('reason')) if result.get('reason') else ''}")
    return result


def run(broker: Any, tmp: Path, probation_s: float) -> bool:
    from edge.agent import Agent

    key = Ed25519PrivateKey.generate()
    config = agent_config(broker, tmp / "state", key, probation_s)
    watcher = Watcher(broker.host, broker.port, config.base_topic, quiet=True)
    printer, stop = StatePrinter(watcher), threading.Event()
    agent = Agent(config)
    agent.start()
    feeder = threading.Thread(target=stream, args=(broker, f"{config.base_topic}/sensors/line1/reading", stop, 50))
    feeder.start()
    try:
        factory = read_manifest(MODELS / "manifest.json")
        good = write_bundle(tmp / "v2.tar", export_subset(MODELS, tmp / "v2", ("autoencoder",)), key, "v2",
                            previous=factory)
        print(f"\n1. a good update (v2), probation {probation_s:g} s\n  release summary: {good['summary']}")
        ok = ship(broker, config.base_topic, tmp / "v2.tar").get("state") == "installed" and \
            printer.wait_for("active", "v2", probation_s + 20)
        loud = export_subset(MODELS, tmp / "v3", ("autoencoder",), threshold=threshold_for_rate(0.15))
        write_bundle(tmp / "v3-loud.tar", loud, key, "v3-loud", replaces="v2", previous=factory)
        print("\n2. a bad update (v3-loud: 15% of normal readings alert, the manifest promises 1%)")
        ok = ok and ship(broker, config.base_topic, tmp / "v3-loud.tar").get("state") == "installed" and \
            printer.wait_for("rolled_back", "v2", probation_s + 20)
    finally:
        stop.set()
        feeder.join()
        agent.stop()
        printer.show()
        watcher.clear_retained([*demo_leftovers(config), f"{config.base_topic}/model/update",
                                f"{config.base_topic}/update/progress", f"{config.base_topic}/model/sensor/line1"])
        watcher.close()
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo_update", description=__doc__.split("\n\n")[0])
    add_broker_args(parser)
    parser.add_argument("--probation", type=float, default=20.0, help="seconds of probation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    with demo_broker(args, "edgepipe-demo-update-") as (tmp, broker):
        ok = run(broker, tmp, args.probation)
    print(f"\n{'update promoted, bad update rolled back by itself' if ok else 'FAILED'} "
          f"in {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
