"""The three pipelines: sources -> preprocess -> model -> postprocess -> publish, one worker each.

Bad input never stops a pipeline: it is skipped, counted and described on the `error` topic.
Queues are bounded: a camera keeps only the newest frame (stale ones are dropped and
counted), reading queues drop their oldest entry when full (counted).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge import messages
from edge.config import CameraConfig, SensorConfig, SeriesConfig
from edge.frames import Frame, FrameSource, SourceError
from edge.messages import Message, Topics
from edge.readings import InvalidReading, parse_reading
from edge.wrappers import AnomalyRule, AnomalyScorer, Classifier, Forecaster

log = logging.getLogger(__name__)
Send = Callable[[Message], None]
END = object()  # end of a finite source: drain and stop


@dataclass
class Counters:
    received: int = 0
    processed: int = 0
    invalid: int = 0
    dropped: int = 0
    published: int = 0
    source_errors: int = 0
    duplicates: int = 0  # re-delivered readings already processed (series: ts not after the last one)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Context:
    """What every pipeline needs to publish: the topic layout, the device name and the sender."""

    topics: Topics
    device: str
    send: Send

    def report(self, component: str, reason: str, payload: bytes | str | None = None) -> None:
        raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
        self.send(messages.error(self.topics, self.device, component=component, reason=reason,
                                 input_excerpt=messages.excerpt(raw) if raw is not None else None))


class ReadingPipeline:
    """Shared by sensors and series: a bounded queue of raw payloads and one worker thread."""

    kind = "reading"

    def __init__(self, name: str, ctx: Context, queue_size: int) -> None:
        self.name, self.ctx = name, ctx
        self.counters = Counters()
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.finished = threading.Event()
        self.lock = threading.Lock()  # held while handling a reading; commands and reloads take it too
        self.thread = threading.Thread(target=self._work, name=f"{self.kind}:{name}", daemon=True)

    @property
    def component(self) -> str:
        return f"{self.kind}/{self.name}"

    def start(self) -> None:
        self.thread.start()

    def submit(self, payload: bytes | str, done: Callable[[], None] | None = None, block: bool = False) -> None:
        """Queue one reading. From MQTT it never blocks: the oldest waiting reading gives way.

        `done` (the MQTT acknowledgement) is called once the reading has been handled -- its
        results are in the outbox and the forecaster state is saved -- or dropped. A file or
        stdin feed passes `block=True`: it is read no faster than the model keeps up, nothing dropped.
        """
        self.counters.received += 1
        if block:
            self.queue.put((payload, done))
            return
        for item in put_displacing(self.queue, (payload, done)):
            if item is not END:
                self.counters.dropped += 1
                _call(item[1])

    def end_of_input(self) -> None:
        self.queue.put(END)

    def stop(self, timeout: float = 5.0) -> None:
        """Drain what is queued (bounded by `timeout`), then stop the worker."""
        self.queue.put(END)
        self.thread.join(timeout)

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is END:
                break
            payload, done = item
            try:
                with self.lock:
                    self.handle(payload)
                self.counters.processed += 1
            except InvalidReading as exc:
                self.counters.invalid += 1
                log.info("%s: invalid reading: %s", self.component, exc)
                self.ctx.report(self.component, f"invalid reading: {exc}", payload)
            except Exception as exc:  # noqa: BLE001 - a bug on one reading must not stop the pipeline
                self.counters.invalid += 1
                log.exception("%s: failed on a reading", self.component)
                self.ctx.report(self.component, f"internal error: {type(exc).__name__}: {exc}", payload)
            _call(done)
        self.finished.set()

    def handle(self, payload: bytes | str) -> None:
        raise NotImplementedError


class SensorPipeline(ReadingPipeline):
    """Readings -> autoencoder score -> k-of-n rule -> `anomaly` on every change and every anomalous reading."""

    kind = "sensor"

    def __init__(self, cfg: SensorConfig, scorer: AnomalyScorer, ctx: Context, queue_size: int) -> None:
        super().__init__(cfg.name, ctx, queue_size)
        self.scorer = scorer
        threshold = cfg.threshold if cfg.threshold is not None else float(scorer.entry.postprocess["threshold"])
        self.rule = AnomalyRule(threshold, cfg.debounce_k, cfg.debounce_n)
        self.alerts = 0

    def handle(self, payload: bytes | str) -> None:
        reading = parse_reading(payload, expected=self.scorer.n_features)
        score = self.scorer.score(np.asarray(reading.values, np.float32))
        if score is None:
            return
        is_anomaly, changed = self.rule.update(score)
        if is_anomaly or changed:
            self.alerts += is_anomaly
            self.ctx.send(messages.anomaly(
                self.ctx.topics, self.ctx.device, self.scorer.ref, self.name, score=score,
                threshold=self.rule.threshold, is_anomaly=is_anomaly, values=list(reading.values),
                window=self.scorer.window, seq=self.counters.processed, changed=changed, reading_ts=reading.ts))
            self.counters.published += 1


class SeriesPipeline(ReadingPipeline):
    """Readings -> one LSTM step (state carried and saved) -> `forecast` of the next value."""

    kind = "series"

    def __init__(self, cfg: SeriesConfig, forecaster: Forecaster, ctx: Context, queue_size: int) -> None:
        super().__init__(cfg.name, ctx, queue_size)
        self.forecaster = forecaster

    def handle(self, payload: bytes | str) -> None:
        """One step; the forecast goes to the outbox *before* the state is saved, so a crash in
        between repeats this reading (same forecast again) rather than losing its forecast."""
        reading = parse_reading(payload, expected=1)
        if self.forecaster.already_seen(reading.ts):
            self.counters.duplicates += 1
            log.info("%s: reading ts=%r is not after the last one processed; skipped as a re-delivery",
                     self.component, reading.ts)
            return
        try:
            value = self.forecaster.step(reading.values[0])
        except ValueError as exc:  # e.g. a value the series transform cannot take (log of <= 0)
            raise InvalidReading(str(exc)) from None
        step = self.forecaster.step_index - 1
        if value is not None:
            self.ctx.send(messages.forecast(self.ctx.topics, self.ctx.device, self.forecaster.ref, self.name,
                                            observed=reading.values[0], forecast_value=value, step=step,
                                            reading_ts=reading.ts))
            self.counters.published += 1
        self.forecaster.commit(reading.ts)

    def reset(self) -> None:
        with self.lock:
            self.forecaster.reset()


def put_displacing(q: queue.Queue[Any], item: Any) -> list[Any]:
    """Put without blocking; when the queue is full the oldest entries give way. Returns them."""
    displaced = []
    while True:
        try:
            q.put_nowait(item)
            return displaced
        except queue.Full:
            try:
                displaced.append(q.get_nowait())
            except queue.Empty:
                pass


def _call(done: Callable[[], None] | None) -> None:
    if done is not None:
        done()


class CameraPipeline:
    """Capture -> preprocess + model -> postprocess + publish, in threads, with bounded hand-overs between them.

    A live camera (`drop_stale = true`) keeps only the newest frame in a one-slot queue, so a
    slow model never makes frames pile up: a frame replaced before it was classified is
    dropped and counted. With `drop_stale = false` (files) the capture thread classifies each
    frame itself: nothing is dropped. Either way the model's raw output goes to a small queue
    and a third thread turns it into a label and top-k, builds the message and publishes it:
    the model's invoke releases the GIL, so that work overlaps the next frame's inference
    instead of adding to it, and a slow or reconnecting broker link holds up the publishing
    thread, not the model. A dead camera is
    reopened with exponential backoff (reported on `error`) while the other pipelines carry on.
    """

    RESULTS_QUEUE = 8  # classified frames waiting for the publishing thread; when full, the classifier waits

    def __init__(self, cfg: CameraConfig, source: FrameSource, classifier: Classifier, ctx: Context) -> None:
        self.cfg, self.source, self.classifier, self.ctx = cfg, source, classifier, ctx
        self.name = cfg.name
        self.counters = Counters()
        self.slot: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.results: queue.Queue[Any] = queue.Queue(maxsize=self.RESULTS_QUEUE)
        self.stop_event = threading.Event()
        self.finished = threading.Event()
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
                return True
            except SourceError as exc:
                self._source_failed(exc, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, self.cfg.retry_max)
        return False

    def _source_failed(self, exc: Exception, delay: float) -> None:
        self.counters.source_errors += 1
        log.warning("camera %s: %s (retrying in %.0f s)", self.name, exc, delay)
        self.ctx.report(f"camera/{self.name}", f"{exc}; retrying in {delay:.0f} s")

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
                self.ctx.report(f"camera/{self.name}", f"undecodable frame: {exc}")
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
        try:
            raw, latency_ms = self.classifier.infer(frame.image)
        except ValueError as exc:
            self.counters.invalid += 1
            self.ctx.report(f"camera/{self.name}", f"frame {frame.seq} not usable: {exc}")
            return
        self.counters.processed += 1
        self.results.put((frame, raw, latency_ms))

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

    def _send_result(self, frame: Frame, raw: np.ndarray, latency_ms: float) -> None:
        try:
            result = self.classifier.postprocess(raw, latency_ms)
            self.ctx.send(messages.classification(
                self.ctx.topics, self.ctx.device, self.classifier.ref, self.name, label=result.label,
                index=result.index, score=result.score, top_k=result.top_k, seq=frame.seq,
                latency_ms=result.latency_ms, truth=frame.truth))
            self.counters.published += 1
        except Exception:  # noqa: BLE001 - one bad result must not stop the camera's output
            log.exception("camera %s: could not publish the result of frame %d", self.name, frame.seq)
