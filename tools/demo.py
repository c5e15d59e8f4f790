"""`python -m tools.demo` (`make demo`): the whole edge pipeline on shipped data, over real MQTT.

It picks a broker -- one already listening on localhost:1883, else a `mosquitto` it starts on a
free port, else an embedded amqtt broker in this process -- and says which. Then it runs the
agent with the committed models on `data/`: 300 labelled Fashion-MNIST test frames replayed as a
camera, the lecture's sensor line with "wrong" and "noisy" segments injected at known rows, and
the airline series month by month, while a subscriber prints alerts and forecasts as they
arrive. It ends with a summary and a report (PNG plots and an HTML page), and stops everything
it started. No TensorFlow: this runs on a Pi as it does on a laptop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import parse_config
from edge.homeassistant.announcer import retire
from edge.info import info_topic
from edge.mqtt.messages import Topics
from edge.watch import describe
from tools.broker import Mosquitto, find_mosquitto, listening, start_embedded

log = logging.getLogger("tools.demo")
ROOT = Path(__file__).resolve().parents[1]


# --- the broker ----------------------------------------------------------------------------
@dataclass
class BrokerHandle:
    kind: str
    host: str
    port: int
    stop: Any = field(default=lambda: None, repr=False)

    def describe(self) -> str:
        return {"existing": f"the broker already listening on {self.host}:{self.port}",
                "mosquitto": f"mosquitto started on {self.host}:{self.port} (stopped at the end)",
                "embedded": f"an embedded amqtt broker on {self.host}:{self.port} (in this process)"}[self.kind]


def start_mosquitto(workdir: Path) -> BrokerHandle | None:
    if find_mosquitto() is None:
        return None
    broker = Mosquitto(workdir).start()
    return BrokerHandle("mosquitto", "127.0.0.1", broker.port, broker.stop)


def pick_broker(choice: str, workdir: Path, host: str = "localhost", port: int = 1883) -> BrokerHandle:
    if choice in ("auto", "existing") and listening(host, port):
        return BrokerHandle("existing", host, port)
    if choice in ("auto", "mosquitto"):
        handle = start_mosquitto(workdir)
        if handle:
            return handle
    if choice in ("auto", "embedded"):
        embedded = start_embedded()
        if embedded:
            return BrokerHandle("embedded", "127.0.0.1", *embedded)
    if choice == "existing":
        raise SystemExit(f"--broker existing: nothing listens on {host}:{port} (leave --broker out: the demo then "
                         "starts a broker of its own)")
    raise SystemExit(f"no MQTT broker for --broker {choice}: none listens on {host}:{port}, no `mosquitto` binary "
                     "(apt-get install mosquitto), and amqtt is not installed (pip install amqtt)")


# --- watching --------------------------------------------------------------------------------
class Watcher:
    """Subscribes to the demo device, keeps every message and prints the interesting ones."""

    def __init__(self, host: str, port: int, base: str, quiet: bool = False) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.quiet = quiet
        self.connected = threading.Event()
        self.refused: str | None = None
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, r, p: self._on_connect(c, r, base)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self.connected.wait(10) or self.refused:
            self.client.loop_stop()
            raise SystemExit(f"the broker at {host}:{port} {self.refused or 'did not answer'}: the demo needs one "
                             "without a password (leave --broker out, or use --broker mosquitto: a broker of its own)")
        time.sleep(0.3)

    def _on_connect(self, client: Any, reason: Any, base: str) -> None:
        if reason.is_failure:
            self.refused = f"refused the demo's subscriber ({reason})"
        else:
            client.subscribe(f"{base}/#", qos=1)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            data = json.loads(msg.payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = {"raw": msg.payload.decode("utf-8", "replace")}
        with self.lock:
            self.messages.append((msg.topic, data))
        if not self.quiet and self._worth_printing(msg.topic, data):
            print("  " + describe(msg.topic, msg.payload), flush=True)

    @staticmethod
    def _worth_printing(topic: str, data: dict) -> bool:
        if topic.endswith("/anomaly"):
            return bool(data.get("changed"))
        if "/forecast/" in topic:
            return data.get("step", 0) % 12 == 0
        if topic.endswith("/class"):
            return data.get("seq", 0) % 30 == 0
        return topic.endswith("/error")

    def of(self, suffix: str) -> list[dict]:
        with self.lock:
            return [d for t, d in self.messages if t.endswith(suffix) or f"/{suffix}/" in t]

    def unique(self, suffix: str, order: str) -> list[dict]:
        """QoS 1 messages once each (at-least-once delivery may repeat one; its `id` says so), in order."""
        return sorted({m["id"]: m for m in self.of(suffix)}.values(), key=lambda m: m[order])

    def clear_retained(self, topics: list[str]) -> None:
        """Empty retained payloads on `topics`, each acknowledged (or given up after a few seconds)."""
        for topic in topics:
            try:
                self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not clear %s: %s", topic, exc)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the run ---------------------------------------------------------------------------------
def agent_config(broker: BrokerHandle, state_dir: Path, speed: float, every_frame: bool = False) -> Any:
    """The demo's agent: a camera replay, the sensor line and the airline series. `every_frame`: the replay
    waits for the model (`drop_stale = false`), so the count classified does not depend on the CPU's load."""
    return parse_config({
        "device_id": "demo", "models_dir": str(ROOT / "models"), "state_dir": str(state_dir),
        "stats_interval": 2.0,
        "mqtt": {"host": broker.host, "port": broker.port, "discovery": True},
        "camera": [{"name": "cam0", "source": f"replay:{ROOT / 'data' / 'sample-frames.npz'}", "fps": 50.0 * speed,
                    "drop_stale": not every_frame}],
        "sensor": [{"name": "line1", "source": f"csv:{ROOT / 'data' / 'sensor-stream.csv'}:x,y",
                    "rate": 200.0 * speed, "debounce_k": 2, "debounce_n": 3}],
        "series": [{"name": "airline", "source": f"csv:{ROOT / 'data' / 'airline-passengers.csv'}:Passengers",
                    "rate": 30.0 * speed}],
    })


def demo_leftovers(config: Any) -> list[str]:
    """The retained topics the demo's agent leaves on a broker that outlives it: its Home Assistant
    configs (else a phantom `edgepipe demo` device stays in Home Assistant), sensor states, stats, status and
    info (else `python -m fleet status` lists the demo as a device)."""
    topics = Topics(config.base_topic)
    return [*(m.topic for m in retire(config.state_dir)),
            *(topics.path("sensors", s.name, "state") for s in config.sensor), topics.stats, topics.status,
            info_topic(topics)]


def summarize(watcher: Watcher, debounce_n: int, camera: dict[str, int]) -> dict[str, Any]:
    """What the subscriber saw, plus the camera pipeline's own counters (`camera`, read after the agent
    stopped): how many frames the replay sent and how many it dropped as stale because the model was
    still busy with an earlier one."""
    segments = json.loads((ROOT / "data" / "sensor-stream.segments.json").read_text())["segments"]
    classes = watcher.of("/class")
    anomalies = watcher.unique("/anomaly", "seq")
    forecasts = watcher.unique("forecast", "step")
    alerts = [m["seq"] for m in anomalies if m["is_anomaly"]]
    starts = [m["seq"] for m in anomalies if m["is_anomaly"] and m["changed"]]

    def in_segment(seq: int) -> bool:
        return any(s["start"] <= seq < s["end"] + debounce_n for s in segments)

    detected = [any(s["start"] <= a < s["end"] + debounce_n for a in alerts) for s in segments]
    observed = {m["step"]: m["observed"] for m in forecasts}
    pairs = [(m["forecast"], observed[m["step"] + 1]) for m in forecasts if m["step"] + 1 in observed]
    rmse = float(np.sqrt(np.mean([(f - o) ** 2 for f, o in pairs]))) if pairs else float("nan")
    scored = [(m["intervals"], observed[m["step"] + 1]) for m in forecasts
              if m["step"] + 1 in observed and m.get("intervals")]
    coverage = {f"{b['coverage']:.0%}": float(np.mean([bs[i]["lower"] <= o <= bs[i]["upper"] for bs, o in scored]))
                for i, b in enumerate(scored[0][0])} if scored else {}
    return {
        "frames_classified": len(classes),
        "frames_sent": camera["received"],
        "frames_dropped": camera["dropped"],
        "frame_accuracy": float(np.mean([m["label"] == m.get("truth") for m in classes])) if classes else 0.0,
        "segments": [{**s, "detected": d} for s, d in zip(segments, detected)],
        "segments_detected": int(sum(detected)),
        "false_alerts": sum(1 for s in starts if not in_segment(s)),
        "anomaly_readings_flagged": len(alerts),
        # an always-on detector flags every segment too: what tells them apart is the readings outside
        "flagged_in_segments": sum(1 for a in alerts if in_segment(a)),
        "flagged_outside_segments": sum(1 for a in alerts if not in_segment(a)),
        "forecasts": len(forecasts),
        "forecast_rmse": rmse,
        "forecast_inside_bounds": coverage,  # nominal coverage -> share of observed values inside the bounds
        "errors": len(watcher.of("/error")),
    }


def print_summary(summary: dict[str, Any], broker: BrokerHandle, elapsed: float) -> None:
    print("\n=== edgepipe demo: summary ===")
    print(f"broker:            {broker.describe()}")
    print(f"frames classified: {summary['frames_classified']} of {summary['frames_sent']}, accuracy "
          f"{summary['frame_accuracy']:.1%} (int8 CNN on Fashion-MNIST test frames it never saw)")
    if summary["frames_dropped"]:  # a slow CPU: a result, not a fault -- a live camera does the same
        print(f"                   {summary['frames_dropped']} skipped while the model was busy "
              "— the camera runs faster than this CPU")
    else:
        print("                   none skipped: the model kept up with the camera")
    print(f"anomaly segments:  {summary['segments_detected']} of {len(summary['segments'])} injected segments "
          f"flagged, {summary['false_alerts']} false alert(s) on clean readings")
    for s in summary["segments"]:
        print(f"    rows {s['start']}-{s['end'] - 1} {s['kind']:<5}: {'flagged' if s['detected'] else 'MISSED'}")
    inside = summary.get("forecast_inside_bounds", {})
    shares = "/".join(f"{v:.0%}" for v in inside.values())
    bounds = f"; inside the {'/'.join(inside)} bounds: {shares}" if inside else ""
    print(f"forecasts:         {summary['forecasts']} one-month-ahead forecasts, RMSE {summary['forecast_rmse']:.1f} "
          f"passengers{bounds}")
    print(f"errors reported:   {summary['errors']}")
    print(f"took {elapsed:.1f} s")


def add_broker_args(parser: argparse.ArgumentParser) -> None:
    """--broker, --host, --port: how `pick_broker` finds one (the demo and the update demo alike)."""
    parser.add_argument("--broker", choices=["auto", "existing", "mosquitto", "embedded"], default="auto")
    parser.add_argument("--host", default="localhost", help="the existing broker's host (--broker auto/existing)")
    parser.add_argument("--port", type=int, default=1883, help="the existing broker's port")


@contextlib.contextmanager
def demo_broker(args: argparse.Namespace, prefix: str) -> Iterator[tuple[Path, BrokerHandle]]:
    """A temporary folder and the broker `add_broker_args` chose (started in that folder if need be),
    stopped when the demo ends however it ends."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        broker = pick_broker(args.broker, Path(tmp), args.host, args.port)
        print(f"MQTT broker: {broker.describe()}")
        try:
            yield Path(tmp), broker
        finally:
            broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0])
    add_broker_args(parser)
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (2: twice as fast)")
    parser.add_argument("--duration", type=float, default=120.0, help="stop after this many seconds at the latest")
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "demo")
    parser.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--quiet", action="store_true", help="do not print messages as they arrive")
    parser.add_argument("--every-frame", action="store_true", help="the camera replay waits for the model instead "
                        "of skipping frames as a live camera does (the figures then do not depend on the CPU's load)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edge.agent import Agent  # after logging is set up

    started = time.monotonic()
    with demo_broker(args, "edgepipe-demo-") as (tmp, broker):
        watcher = None
        try:
            config = agent_config(broker, tmp / "state", args.speed, args.every_frame)
            watcher = Watcher(broker.host, broker.port, config.base_topic, args.quiet)
            agent = Agent(config)
            print(f"agent '{config.device_id}' running: camera replay, sensor stream, airline series "
                  f"(watch with: mosquitto_sub -h {broker.host} -p {broker.port} -t '{config.base_topic}/#' -v)")
            agent.run(duration=args.duration, until_inputs_done=True)
            never = None if agent.link.connects else f"the agent never connected: {agent.link.last_error}"
            time.sleep(1.0)  # the last QoS 0 messages
            camera = next(p for p in agent.pipelines if p.kind == "camera")
            summary = summarize(watcher, debounce_n=3, camera=camera.counters.as_dict())
        finally:
            if watcher:
                watcher.clear_retained(demo_leftovers(config))
                watcher.close()
        from tools.report import write_report

        page = write_report(args.report, watcher, summary, ROOT)
    print_summary(summary, broker, time.monotonic() - started)
    print(f"report:            {page}")
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2))
    failed = [never] if never else failures(summary)
    for reason in failed:
        print(f"demo FAILED: {reason}")
    return 1 if failed else 0


def failures(summary: dict[str, Any]) -> list[str]:
    """What a working chain cannot show: the summary is then a fault to fix, not a result to read."""
    found = []
    if not summary["frames_classified"]:
        found.append("no frame was classified (see the log above)")
    if not summary["segments_detected"]:
        found.append("no injected anomaly segment was flagged")
    if not summary["forecasts"]:
        found.append("no forecast arrived")
    return found


if __name__ == "__main__":
    sys.exit(main())
