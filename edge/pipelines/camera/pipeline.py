"""A camera: capture -> preprocess + CNN (or its regions) -> postprocess + publish, in three threads.

A live camera (`drop_stale = true`) keeps only the newest frame in a one-slot queue, so a slow
model never makes frames pile up (a replaced frame is dropped and counted); with `drop_stale =
false` (files) nothing is dropped. The raw output goes to a small queue and a third thread builds
and publishes the message: the invoke releases the GIL, so that work overlaps the next frame's
inference, and a slow broker link holds up the publishing thread, not the model. A dead camera is
reopened with exponential backoff (reported on `error`) while the other pipelines carry on.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.models.classifier import Classification, Classifier
from edge.mqtt.messages import Message
from edge.pipelines.base import END, Counters, put_displacing
from edge.pipelines.camera.config import CameraConfig, CameraModels
from edge.pipelines.camera.messages import classification
from edge.pipelines.camera.output import RegionOutput
from edge.pipelines.camera.runner import RegionOutcome, RegionRunner
from edge.pipelines.publisher import Publisher
from edge.sources import camera_source
from edge.sources.frames import Frame, FrameSource, SourceError

log = logging.getLogger(__name__)


class CameraPipeline:
    """Capture -> preprocess + model -> postprocess + publish, with bounded hand-overs between the threads."""

    kind = "camera"

    RESULTS_QUEUE = 8  # classified frames waiting for the publishing thread; when full, the classifier waits

    def __init__(self, cfg: CameraConfig, source: FrameSource, classifier: Classifier, publisher: Publisher,
                 regions: dict[str, Classifier] | None = None, state_dir: Path | str = "state") -> None:
        self.cfg, self.source, self.classifier, self.out = cfg, source, classifier, publisher
        self.name = cfg.name
        dataset = Path(cfg.dataset_dir) if cfg.dataset_dir else Path(state_dir) / "dataset"
        self.runners = {r.name: RegionRunner(r, (regions or {})[r.name], cfg.name, dataset) for r in cfg.regions}
        self.region_out = RegionOutput(publisher, cfg.name, cfg.regions, Path(state_dir) / "snapshots")
        self.finite = camera_source(cfg.source).finite and not cfg.loop
        self.counters = Counters()
        self.truth = collections.Counter()  # labelled replays: "labelled" and "correct" frames
        self.lock = threading.Lock()  # held for each invoke: a self-test's burst shares the interpreter
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
        self.out.report(f"camera/{self.name}", f"{exc}; retrying in {delay:.0f} s")

    def _capture(self) -> None:
        """Read frames at the configured rate and hand each to `deliver` (the slot, or the model itself)."""
        deliver = self._offer if self.cfg.drop_stale else self._classify
        fps = getattr(self.source, "rate", None) or self.cfg.fps  # `gan:...,rate=5` sets its own pace
        period = 1.0 / fps if fps > 0 else 0.0
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
        if self.runners:
            self._classify_regions(frame)
            return
        classifier = self.classifier  # read once: a swap takes effect between two frames
        try:
            with self.lock:
                raw, latency_ms = classifier.infer(frame.image)
        except ValueError as exc:
            self.counters.invalid += 1
            self.out.report(f"camera/{self.name}", f"frame {frame.seq} not usable: {exc}")
            return
        self.counters.processed += 1
        self.results.put((frame, classifier, raw, latency_ms))

    def _classify_regions(self, frame: Frame) -> None:
        """Each region of the frame: gated, classified and judged here; what to send goes to the publisher."""
        now = frame.t if frame.t is not None else time.monotonic()
        usable = False
        for runner in self.runners.values():
            try:
                with self.lock:  # a region may share the camera's interpreter, which a self-test also uses
                    outcome = runner.step(frame.seq, frame.image, now)
            except ValueError as exc:  # a frame the region does not fit, an image that is not one
                self.out.report(f"camera/{self.name}/{runner.cfg.name}", f"frame {frame.seq} not usable: {exc}")
                continue
            except Exception:  # noqa: BLE001 - a bug in one region must not end the camera's thread
                self.counters.errors += 1
                log.exception("camera %s: region %s failed on frame %d", self.name, runner.cfg.name, frame.seq)
                continue
            usable = True
            if outcome is not None:
                self.results.put(outcome)
        if usable:
            self.counters.processed += 1
        else:
            self.counters.invalid += 1

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
                if isinstance(item, RegionOutcome):
                    self._send_region(item)
                else:
                    self._send_result(*item)

    def _send_region(self, outcome: RegionOutcome) -> None:
        try:
            self.region_out.send(outcome)
        except Exception:  # noqa: BLE001 - one bad result must not stop the camera's output
            self.counters.errors += 1
            log.exception("camera %s: could not publish region %s of frame %d", self.name, outcome.region,
                          outcome.seq)

    def _send_result(self, frame: Frame, classifier: Classifier, raw: np.ndarray, latency_ms: float) -> None:
        try:
            result = classifier.postprocess(raw, latency_ms)
            if frame.truth is not None:
                self.truth.update(labelled=1, correct=int(result.label == frame.truth))
            if self.out.send(classification(
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
        for name, classifier in models.regions.items():
            self.runners[name].classifier = classifier
        self.cfg.region_labels = {name: c.labels for name, c in models.regions.items()}
        if models.generator is not None and hasattr(self.source, "generator"):
            self.source.generator = models.generator

    def classify_burst(self, images: list[np.ndarray]) -> tuple[Classifier, list[Classification]]:
        """Frames offered to the live classifier between the camera's own (the self-test, `edge.selftest`):
        the same preprocessing and interpreter, one frame per hold of the lock; nothing is published."""
        classifier = self.classifier  # one model for the whole burst, even if a reload lands meanwhile
        results = []
        for image in images:
            with self.lock:
                results.append(classifier.classify(image))
        return classifier, results

    def stats(self) -> dict[str, int]:
        if not self.runners:
            return {**self.counters.as_dict(), **self.truth}  # `labelled`, `correct` once frames carry truth
        return self.region_out.stats(self.counters.as_dict(), self.runners.values())

    def state_messages(self) -> list[Message]:
        """The regions' current states: sent again at every connect (edge.homeassistant.announcer)."""
        return self.region_out.state_messages()

    def start_capture(self, region: str, label: str, count: int, every: float) -> Path:
        """`cmd/capture`: the next `count` crops of `region` into the dataset folder under `label`."""
        if region not in self.runners:
            raise ValueError(f"camera {self.name!r} has no region {region!r} (have {sorted(self.runners)})")
        return self.runners[region].start_capture(label, count, every)

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
        return None if (down := self.down) is None else (time.monotonic() - down[0], down[1])

    def latency(self) -> dict[str, Any]:
        return {"model": self.classifier.entry.name, **self.classifier.latency.summary()}
