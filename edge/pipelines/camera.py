"""Cameras: capture -> preprocess + CNN -> postprocess + publish `vision/<name>/class`, in three threads.

A live camera (`drop_stale = true`) keeps only the newest frame in a one-slot queue, so a
slow model never makes frames pile up: a frame replaced before it was classified is
dropped and counted. With `drop_stale = false` (files) the capture thread classifies each
frame itself: nothing is dropped. Either way the model's raw output goes to a small queue
and a third thread turns it into a label and top-k, builds the message and publishes it:
the model's invoke releases the GIL, so that work overlaps the next frame's inference
instead of adding to it, and a slow or reconnecting broker link holds up the publishing
thread, not the model. A dead camera is reopened with exponential backoff (reported on
`error`) while the other pipelines carry on.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.fields import setting
from edge.models import Classifier, Generator
from edge.mqtt import messages
from edge.mqtt.discovery import entity
from edge.pipelines.base import END, Counters, Publisher, put_displacing
from edge.pipelines.registry import ModelLoader, PipelineKind, Wiring
from edge.sources import camera_source
from edge.sources.frames import Frame, FrameSource, SourceError, make_frame_source

log = logging.getLogger(__name__)


@dataclass
class CameraConfig:
    name: str = setting(name=True)
    source: str = setting(parse=camera_source)  # picamera2, opencv:<index|file|url>, folder:<dir>, replay:<npz>, gan
    model: str = "cnn"
    fps: float = setting(5.0, ge=0)  # 0: as fast as the source delivers
    invert: bool | None = None  # None: as the manifest says
    loop: bool = False
    drop_stale: bool = True  # a live camera: keep only the newest frame; false: a file is read no faster
    top_k: int = setting(3, ge=1, le=1000)
    retry_max: float = setting(30.0, gt=0)  # seconds between attempts to reopen a dead camera, at most


@dataclass(frozen=True)
class CameraModels:
    """A camera's classifier, and the generator when the camera is the GAN (`source = "gan"`)."""

    classifier: Classifier
    generator: Generator | None = None


class CameraPipeline:
    """Capture -> preprocess + model -> postprocess + publish, with bounded hand-overs between the threads."""

    kind = "camera"

    RESULTS_QUEUE = 8  # classified frames waiting for the publishing thread; when full, the classifier waits

    def __init__(self, cfg: CameraConfig, source: FrameSource, classifier: Classifier, publisher: Publisher) -> None:
        self.cfg, self.source, self.classifier, self.out = cfg, source, classifier, publisher
        self.name = cfg.name
        self.finite = camera_source(cfg.source).finite and not cfg.loop
        self.counters = Counters()
        self.truth = collections.Counter()  # labelled replays: "labelled" and "correct" frames
        self.slot: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.results: queue.Queue[Any] = queue.Queue(maxsize=self.RESULTS_QUEUE)
        self.stop_event = threading.Event()
        self.finished = threading.Event()
        self.down: tuple[float, str] | None = None  # (since, why) while the source cannot be opened or read
        self.capture_thread = threading.Thread(target=self._capture, name=f"capture:{cfg.name}", daemon=True)
        self.infer_thread = threading.Thread(target=self._infer, name=f"infer:{cfg.name}", daemon=True)
        self.publish_thread = threading.Thread(target=self._publish, name=f"publish:{cfg.name}", daemon=True)

    def start(self) -> None:
        self.publish_thread.start()
        self.capture_thread.start()
        if self.cfg.drop_stale:  # a live camera: capture and inference apart, the newest frame between them
            self.infer_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.capture_thread.join(timeout)
        if self.cfg.drop_stale:
            self._offer(END)
            self.infer_thread.join(timeout)
        self.publish_thread.join(timeout)
        self.source.close()

    def _offer(self, item: Any) -> None:
        self.counters.dropped += sum(stale is not END for stale in put_displacing(self.slot, item))

    def _open_with_backoff(self) -> bool:
        delay = 1.0
        while not self.stop_event.is_set():
            try:
                self.source.open()
                self.down = None
                return True
            except SourceError as exc:
                self._source_failed(exc, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, self.cfg.retry_max)
        return False

    def _source_failed(self, exc: Exception, delay: float) -> None:
        self.down = (self.down[0] if self.down else time.monotonic(), str(exc))
        self.counters.source_errors += 1
        log.warning("camera %s: %s (retrying in %.0f s)", self.name, exc, delay)
        self.out.report(f"camera/{self.name}", f"{exc}; retrying in {delay:.0f} s")

    def _capture(self) -> None:
        """Read frames at the configured rate and hand each to `deliver` (the slot, or the model itself)."""
        deliver = self._offer if self.cfg.drop_stale else self._classify
        period = 1.0 / self.cfg.fps if self.cfg.fps > 0 else 0.0
        if not self._open_with_backoff():
            self._finish()
            return
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            try:
                frame = self.source.read()
            except SourceError as exc:
                self.source.close()
                self._source_failed(exc, 1.0)
                if not self._open_with_backoff():
                    break
                continue
            except ValueError as exc:  # one undecodable frame: skip it
                self.counters.invalid += 1
                self.out.report(f"camera/{self.name}", f"undecodable frame: {exc}")
                continue
            if frame is None:
                break
            self.counters.received += 1
            deliver(frame)
            if period:
                next_at += period
                self.stop_event.wait(max(0.0, next_at - time.monotonic()))
        self._finish()

    def _finish(self) -> None:
        if self.cfg.drop_stale:
            self._offer(END)  # the last frame may give way to it: counted as dropped
        else:
            self.results.put(END)

    def _infer(self) -> None:
        while True:
            frame = self.slot.get()
            if frame is END:
                break
            self._classify(frame)
        self.results.put(END)

    def _classify(self, frame: Frame) -> None:
        classifier = self.classifier  # read once: a swap takes effect between two frames
        try:
            raw, latency_ms = classifier.infer(frame.image)
        except ValueError as exc:
            self.counters.invalid += 1
            self.out.report(f"camera/{self.name}", f"frame {frame.seq} not usable: {exc}")
            return
        self.counters.processed += 1
        self.results.put((frame, classifier, raw, latency_ms))

    def _publish(self) -> None:
        """Build and send each classification, in frame order; `finished` once the last one is out.

        Takes everything waiting at once: under load the queue holds a few results, and one
        wake-up for several of them leaves more of the GIL to the inference thread.
        """
        while True:
            batch = [self.results.get()]
            while batch[-1] is not END:
                try:
                    batch.append(self.results.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is END:
                    self.finished.set()
                    return
                self._send_result(*item)

    def _send_result(self, frame: Frame, classifier: Classifier, raw: np.ndarray, latency_ms: float) -> None:
        try:
            result = classifier.postprocess(raw, latency_ms)
            if frame.truth is not None:
                self.truth.update(labelled=1, correct=int(result.label == frame.truth))
            if self.out.send(messages.classification(
                self.out.topics, self.out.device, classifier.ref, self.name, label=result.label,
                index=result.index, score=result.score, top_k=result.top_k, seq=frame.seq,
                latency_ms=result.latency_ms, truth=frame.truth)):
                self.counters.published += 1
            else:
                self.counters.dropped += 1  # QoS 0 while the broker is away: not published, counted
        except Exception:  # noqa: BLE001 - one bad result must not stop the camera's output
            self.counters.errors += 1
            log.exception("camera %s: could not publish the result of frame %d", self.name, frame.seq)

    # --- what commands change ---------------------------------------------------------------
    def swap(self, models: CameraModels) -> None:
        """A new classifier from the next frame on (one reference, read once per frame)."""
        self.classifier = models.classifier
        if models.generator is not None and hasattr(self.source, "generator"):
            self.source.generator = models.generator

    def stats(self) -> dict[str, int]:
        return self.counters.as_dict()

    def quality(self) -> dict[str, Any]:
        """Accuracy on labelled frames (a replay, or a folder of class folders): `stats.quality`."""
        labelled, correct = self.truth["labelled"], self.truth["correct"]
        return {"labelled": labelled, "correct": correct, "accuracy": correct / labelled if labelled else None}

    def alive(self) -> bool:
        threads = [self.capture_thread, self.publish_thread] + ([self.infer_thread] if self.cfg.drop_stale else [])
        return self.finished.is_set() or all(t.is_alive() or not t.ident for t in threads)

    def stalled_for(self) -> float:
        return 0.0  # classes are QoS 0: they never wait for the disk

    def source_down(self) -> tuple[float, str] | None:
        """Seconds since the camera last could not be opened or read, and why; None while it delivers."""
        down = self.down
        return None if down is None else (time.monotonic() - down[0], down[1])

    def latency(self) -> dict[str, Any]:
        return {"model": self.classifier.entry.name, **self.classifier.latency.summary()}


def load(cfg: CameraConfig, loader: ModelLoader) -> CameraModels:
    classifier = Classifier(*loader.load(cfg.model, "classify", f"camera {cfg.name!r}"), invert=cfg.invert,
                            top_k=cfg.top_k)
    generator = None
    if camera_source(cfg.source).kind == "gan":
        generator = Generator(*loader.load("gan", "generate", f"camera {cfg.name!r} (source gan)"))
    return CameraModels(classifier, generator)


def build(cfg: CameraConfig, models: CameraModels, wiring: Wiring) -> CameraPipeline:
    source = make_frame_source(camera_source(cfg.source), cfg.loop, models.generator)
    return CameraPipeline(cfg, source, models.classifier, wiring.publisher)


def discovery(prefix: str, topics: messages.Topics, device: str, cfg: CameraConfig) -> list[messages.Message]:
    """The label as the state; only the model as attributes (seq, score, latency change every frame, and
    every change of an attribute would be a row in Home Assistant's recorder)."""
    return [entity(prefix, "sensor", device, f"{cfg.name}_class", topics, topics.path("vision", cfg.name, "class"),
                   value_template="{{ value_json.label }}")]


KIND = PipelineKind("camera", CameraConfig, load, build, discovery)
