"""The publishing side of a camera's regions: state and class messages, snapshots, captured crops.

Runs in the camera's publishing thread, so JPEG/PNG encoding and disk writes never hold up the
next invoke. A failed picture (no encoder, a full disk) is reported and counted; the state message
goes out regardless: the picture illustrates the state, it does not carry it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.mqtt.messages import Message
from edge.pipelines.camera.messages import classification, region_state, snapshot
from edge.pipelines.camera.regions import RegionConfig
from edge.pipelines.camera.runner import RegionOutcome, RegionRunner
from edge.pipelines.camera.snapshot import ImageFolder, NoEncoder, encode
from edge.pipelines.camera.state import RegionState
from edge.pipelines.publisher import Publisher

log = logging.getLogger(__name__)


@dataclass
class RegionCounters:
    state_changes: int = 0
    snapshots: int = 0
    captured: int = 0
    image_errors: int = 0


class RegionOutput:
    def __init__(self, out: Publisher, camera: str, regions: list[RegionConfig], snapshot_dir: Path) -> None:
        self.out, self.camera = out, camera
        self.configs = {r.name: r for r in regions}
        self.snapshots = {r.name: ImageFolder(snapshot_dir, r.snapshots_keep, f"{camera}_{r.name}_") for r in regions}
        self.counters = RegionCounters()
        self.published = self.dropped = 0
        self.current: dict[str, tuple[dict[str, str], RegionState]] = {}
        self._lock = threading.Lock()

    def send(self, outcome: RegionOutcome) -> None:
        cfg = self.configs[outcome.region]
        result, classifier = outcome.result, outcome.classifier
        if result is not None and classifier is not None and cfg.publish_class:
            self._send(classification(
                self.out.topics, self.out.device, classifier.ref, f"{self.camera}/{cfg.name}", label=result.label,
                index=result.index, score=result.score, top_k=result.top_k, seq=outcome.seq,
                latency_ms=result.latency_ms))
        if outcome.change is not None and classifier is not None:
            self.counters.state_changes += 1
            with self._lock:
                self.current[cfg.name] = (classifier.ref, outcome.change)
            if cfg.snapshot:  # the picture first: whoever reacts to the state finds the matching picture
                self._snapshot(cfg, outcome)
            self._send(region_state(self.out.topics, self.out.device, classifier.ref, self.camera, cfg.name,
                                            outcome.change))
        for folder, label in outcome.saves:
            if self._write(folder, outcome.crop, outcome.region, label, "png"):
                self.counters.captured += 1

    def _snapshot(self, cfg: RegionConfig, outcome: RegionOutcome) -> None:
        label = outcome.change.label  # type: ignore[union-attr]
        jpeg = self._write(self.snapshots[cfg.name], outcome.crop, outcome.region, label, "jpeg")
        if jpeg:
            self.counters.snapshots += 1
            self._send(snapshot(self.out.topics, self.camera, cfg.name, jpeg))
        if outcome.frame is not None:
            whole = self._write(self.snapshots[cfg.name], outcome.frame, outcome.region, f"frame_{label}", "jpeg")
            if whole:
                self._send(snapshot(self.out.topics, self.camera, cfg.name, whole, whole_frame=True))

    def _write(self, folder: ImageFolder, image: np.ndarray, region: str, label: str, fmt: str) -> bytes | None:
        """Encode an image and save it; the bytes, or None (reported) when that failed."""
        try:
            data = encode(image, fmt)
            folder.save(data, label, "jpg" if fmt == "jpeg" else "png")
            return data
        except (NoEncoder, OSError, ValueError) as exc:
            self.counters.image_errors += 1
            self.out.report(f"camera/{self.camera}/{region}", f"cannot write a {fmt} image: {exc}")
            return None

    def _send(self, message: Message) -> None:
        if self.out.send(message):
            self.published += 1
        else:
            self.dropped += 1  # QoS 0 while the broker is away; the state is sent again at the next connect

    def stats(self, camera: dict[str, int], runners: Iterable[RegionRunner]) -> dict[str, int]:
        """The camera's counters with the regions' messages added in, and what the regions did."""
        runners = list(runners)
        return {**camera, "published": camera["published"] + self.published,
                "dropped": camera["dropped"] + self.dropped,
                "region_invokes": sum(r.invokes for r in runners),
                "gate_skipped": sum(r.gate.skipped for r in runners), **asdict(self.counters)}

    def state_messages(self) -> list[Message]:
        """Each region's current state, for every (re)connect and Home Assistant's birth."""
        with self._lock:
            current = dict(self.current)
        return [region_state(self.out.topics, self.out.device, model, self.camera, name, state)
                for name, (model, state) in current.items()]
