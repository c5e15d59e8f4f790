"""Benchmark rows of issue 17 (camera regions): frames/s with the motion gate on a static scene vs off, and
the time from a state change in a clip to the retained state message at a subscriber.

Both replay a clip recorded with OpenCV (tools/scene.py, 320x240 MJPG) through the real OpenCV source,
so OpenCV's decoding is part of every frame's cost, as on a Pi reading a camera.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edge.config import parse_config
from edge.models.classifier import Classifier
from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from edge.mqtt.messages import Topics
from edge.pipelines.camera.pipeline import CameraPipeline
from edge.pipelines.publisher import Publisher
from edge.sources.frames import Frame, OpenCVSource
from tools.broker import Mosquitto
from tools.scene import DOOR, Scene, record, timeline

ROOT = Path(__file__).resolve().parent.parent


def _region_table(clip: Path, gate: bool, extra: str = "") -> str:
    return (f'[[camera]]\nname = "cam0"\nsource = "opencv:{clip}"\n{extra}'
            f'[[camera.regions]]\nname = "door"\nrect = {DOOR}\nmotion_gate = {str(gate).lower()}\n'
            'heartbeat = 10.0\npublish_class = true\n')


class DecodedFrames:
    """The first 100 frames of a clip, decoded once and handed out `count` times (10 frames/s of video
    time): the pipeline's own cost per frame, without OpenCV's decoding."""

    def __init__(self, clip: Path, count: int) -> None:
        source = OpenCVSource(str(clip))
        source.open()
        self.images = [source.read().image for _ in range(100)]  # type: ignore[union-attr]
        source.close()
        self.name, self.count, self.seq = "decoded", count, 0

    def open(self) -> None:
        self.seq = 0

    def read(self) -> Frame | None:
        if self.seq >= self.count:
            return None
        self.seq += 1
        return Frame(self.seq, self.images[self.seq % len(self.images)], t=self.seq / 10.0)

    def close(self) -> None:
        pass


def _rate(cfg: Any, source: Any, classifier: Classifier, state_dir: Path) -> dict[str, float]:
    drop = Publisher(Topics("bench"), "bench", lambda message: True)
    pipeline = CameraPipeline(cfg, source, classifier, drop, {"door": classifier}, state_dir)
    started = time.perf_counter()
    pipeline.start()
    pipeline.finished.wait()
    elapsed = time.perf_counter() - started
    pipeline.stop()
    stats = pipeline.stats()
    return {"frames_per_s": stats["processed"] / elapsed, "invokes": stats["region_invokes"],
            "skipped": stats["gate_skipped"]}


def gate_frame_rates(models_dir: Path, frames: int, work: Path, runs: int = 3) -> dict[str, Any]:
    """Frames/s of the camera pipeline (crop, gate, classify, judge; messages built and dropped) on a static
    clip with the gate on and off, alternately `runs` times each (medians): from the video file through
    OpenCV, and from frames decoded beforehand."""
    import tomllib

    clip = record(Scene(timeline(("closed", frames)), seed=3), work / "static.avi")
    entry = read_manifest(models_dir / "manifest.json").get("cnn")
    classifier = Classifier(entry, TFLiteModel.from_entry(entry, models_dir, num_threads=1))
    decoded = DecodedFrames(clip, frames)
    out: dict[str, Any] = {"frames": frames}
    for source in ("file", "decoded"):
        results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        for i in range(runs):
            for gate in (True, False):
                cfg = parse_config(tomllib.loads(_region_table(clip, gate, "fps = 0\ndrop_stale = false\n")))
                frames_from = OpenCVSource(str(clip)) if source == "file" else decoded
                results[gate].append(_rate(cfg.camera[0], frames_from, classifier, work / f"state-{i}-{gate}"))
        for gate, rows in results.items():
            median = statistics.median(r["frames_per_s"] for r in rows)
            out[f"{source}_{'on' if gate else 'off'}"] = {**rows[0], "frames_per_s": median}
    return out


def change_latency(models_dir: Path, work: Path, fps: float = 10.0) -> dict[str, Any]:
    """A paced clip (`fps`, like a live camera) with three door changes, through an agent and mosquitto: for
    each change, the time from the class message of the first changed frame to the retained state message
    at a subscriber, and the frames between them (K - 1 with K = 3, the default `confirm`)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    scene = Scene(timeline(("closed", 20), ("open", 20), ("closed", 20), ("open", 20)), flicker=[(5, 15)], seed=4)
    clip = record(scene, work / "changes.avi")
    broker = Mosquitto(work / "broker").start()
    config = work / "agent.toml"
    config.write_text(f'device_id = "bench"\nmodels_dir = "{models_dir}"\nstate_dir = "{work / "state"}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ndiscovery = false\n'
                      + _region_table(clip, True, f"fps = {fps}\ndrop_stale = false\n"))
    arrivals: list[tuple[float, str, dict]] = []
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with lock:
            arrivals.append((time.perf_counter(), msg.topic.rsplit("/", 1)[-1], json.loads(msg.payload)))

    sub = paho.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe([("edgepipe/bench/vision/+/+/state", 1), ("edgepipe/bench/vision/+/+/class", 1)])
    sub.loop_start()
    try:
        time.sleep(0.3)
        subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config), "--until-done"], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=True)
        time.sleep(0.5)
    finally:
        sub.disconnect()
        sub.loop_stop()
        broker.stop()
    seen = {body["seq"]: t for t, kind, body in arrivals if kind == "class"}
    states = [(t, body) for t, kind, body in arrivals if kind == "state" and body["previous"] is not None]
    rows = [((t - seen[c + 1]) * 1000, body["seq"] - (c + 1)) for c, (t, body) in zip(scene.changes(), states)
            if c + 1 in seen]
    return {"fps": fps, "changes": len(scene.changes()), "published": len(states),
            "ms": [round(ms, 1) for ms, _ in rows], "frames": [n for _, n in rows],
            "median_ms": statistics.median(ms for ms, _ in rows) if rows else float("nan")}


def render(gate: dict[str, Any], latency: dict[str, Any]) -> str:
    on, off = gate["file_on"], gate["file_off"]
    mem_on, mem_off = gate["decoded_on"], gate["decoded_off"]
    return "\n".join([
        "## Camera regions (issue 17: `python -m tools.bench --regions`)", "",
        "| figure | value |", "| --- | --- |",
        f"| static 320x240 MJPG clip, one 80x150 region, int8 CNN, OpenCV decoding included: frames/s with the "
        f"motion gate on, median of 3 | {on['frames_per_s']:.0f} frames/s ({on['invokes']} invokes, "
        f"{on['skipped']} skipped of {gate['frames']}) |",
        f"| ... with the gate off | {off['frames_per_s']:.0f} frames/s ({off['invokes']} invokes) |",
        f"| the same frames decoded beforehand (the pipeline's own cost): gate on / off | "
        f"{mem_on['frames_per_s']:.0f} / {mem_off['frames_per_s']:.0f} frames/s |",
        f"| state change in a clip paced at {latency['fps']:.0f} frames/s -> retained state at a subscriber "
        f"(from the class message of the first changed frame; K = 3) | median {latency['median_ms']:.0f} ms "
        f"(each: {latency['ms']} ms, {latency['frames']} frames later; {latency['published']} of "
        f"{latency['changes']} changes published) |", ""])


def bench_regions(models_dir: Path, frames: int = 3000) -> str:
    with tempfile.TemporaryDirectory(prefix="edgepipe-bench-regions-") as tmp:
        work = Path(tmp)
        return render(gate_frame_rates(models_dir, frames, work), change_latency(models_dir, work))
