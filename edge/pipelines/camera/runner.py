"""One region of one camera, in the camera's inference thread: crop, gate, classify, debounce, capture.

Everything that decides runs here, frame by frame and in order, so the motion gate knows at once
that a change awaits its confirmations (and keeps classifying until they are in). What costs I/O
-- JSON, JPEG, files -- is left to the publishing thread as a `RegionOutcome`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.models.classifier import Classification, Classifier, to_grayscale
from edge.mqtt.messages import utc_now
from edge.pipelines.camera.motion import MotionGate
from edge.pipelines.camera.regions import Region, RegionConfig
from edge.pipelines.camera.snapshot import ImageFolder, safe_part
from edge.pipelines.camera.state import Debouncer, RegionState

UNLABELLED = "_unlabelled"  # the training folder reader skips folders starting with "_"


@dataclass
class CaptureJob:
    """`cmd/capture`: save the next `remaining` crops, one every `every` seconds, under `folder`."""

    label: str
    remaining: int
    every: float
    folder: ImageFolder
    next_at: float = float("-inf")


@dataclass
class RegionOutcome:
    """What one frame gave for one region, for the publishing thread."""

    region: str
    seq: int
    crop: np.ndarray
    frame: np.ndarray | None = None  # the whole frame, for a change of a region with `snapshot_frame`
    classifier: Classifier | None = None
    result: Classification | None = None
    change: RegionState | None = None
    saves: list[tuple[ImageFolder, str]] = field(default_factory=list)  # PNG crops to write: (folder, label)


class RegionRunner:
    def __init__(self, cfg: RegionConfig, classifier: Classifier, camera: str, dataset_dir: Path) -> None:
        self.cfg, self.region, self.camera = cfg, Region.of(cfg), camera
        self.classifier = classifier
        self.dataset_dir = Path(dataset_dir)
        self.gate = MotionGate(cfg.motion_threshold, cfg.heartbeat, cfg.motion_gate)
        self.debouncer = Debouncer(cfg.confirm, cfg.min_confidence)
        self.unlabelled = ImageFolder(self.dataset_dir / UNLABELLED, cfg.capture_keep, f"{camera}_{cfg.name}_")
        self.invokes = 0
        self.capture: CaptureJob | None = None
        self._lock = threading.Lock()

    def start_capture(self, label: str, count: int, every: float) -> Path:
        """Save the next `count` crops into `<dataset_dir>/<label>/` (replaces a capture in progress)."""
        folder = ImageFolder(self.dataset_dir / safe_part(label), None, f"{self.camera}_{self.cfg.name}_")
        with self._lock:
            self.capture = CaptureJob(label, count, every, folder)
        return folder.folder

    def _captures(self, now: float) -> list[tuple[ImageFolder, str]]:
        with self._lock:
            job = self.capture
            if job is None or now < job.next_at:
                return []
            job.remaining -= 1
            job.next_at = now + job.every
            if job.remaining <= 0:
                self.capture = None
            return [(job.folder, job.label)]

    def step(self, seq: int, image: np.ndarray, now: float) -> RegionOutcome | None:
        """One frame; ValueError if the region does not fit it. None when there is nothing to send."""
        crop = self.region.crop(image)
        gray = to_grayscale(crop)
        outcome = RegionOutcome(self.cfg.name, seq, crop, saves=self._captures(now))
        if self.gate.decide(gray, now, force=self.debouncer.pending):
            classifier = self.classifier  # read once: a swap takes effect between two frames
            result = classifier.postprocess(*classifier.infer(gray))
            self.invokes += 1
            outcome.classifier, outcome.result = classifier, result
            outcome.change = self.debouncer.update(result.label, result.score, utc_now(), seq)
            if outcome.change and self.cfg.snapshot and self.cfg.snapshot_frame:
                outcome.frame = image
            if result.score < self.cfg.capture_uncertain:
                outcome.saves.append((self.unlabelled, result.label))
        if outcome.change or outcome.saves or (outcome.result and self.cfg.publish_class):
            return outcome
        return None
