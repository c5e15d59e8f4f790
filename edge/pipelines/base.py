"""What every pipeline shares: the `Pipeline` protocol, counters, and the reading worker (`edge.pipelines.publisher`
is how they publish).

A pipeline is sources -> preprocess -> model -> rule -> publish for one configured input.
It owns its state and every change to it (a new model, a threshold, a reset) happens under
its own lock, between two inputs, so a command never sees half a step. Bad input never
stops a pipeline: it is skipped, counted and described on the `error` topic.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol

from edge.fields import setting
from edge.fileio import StorageUnavailable
from edge.mqtt.inbox import Subscribe
from edge.mqtt.messages import Message
from edge.pipelines.publisher import Publisher
from edge.readings import InvalidReading
from edge.sources import reading_source
from edge.sources.feeds import Feed, make_feed

log = logging.getLogger(__name__)
END = object()  # end of a finite source: drain and stop


class Pipeline(Protocol):
    """The shape the agent and the command dispatcher rely on; each kind adds what its commands need."""

    kind: str
    name: str
    finished: threading.Event  # set once a finite input has been processed to its end

    @property
    def finite(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def swap(self, model: Any) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def latency(self) -> dict[str, Any]: ...

    def alive(self) -> bool: ...

    def stalled_for(self) -> float: ...


@dataclass
class Counters:
    received: int = 0
    processed: int = 0
    invalid: int = 0  # inputs refused as malformed or out of range
    errors: int = 0  # inputs that hit an internal error (a bug): reported, never fatal
    dropped: int = 0
    published: int = 0
    source_errors: int = 0
    duplicates: int = 0  # re-delivered readings already processed (series: ts not after the last one; sensor: seen)
    clock_resets: int = 0  # series: time stamps that jumped back further than `backward_reset`
    late: int = 0  # series: a reading older than one already processed, never seen itself (delivered out of order)
    lost: int = 0  # readings missing between two the sender numbered (`seq`): lost before they reached us

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


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


def call(done: Callable[[], None] | None) -> None:
    if done is not None:
        done()


@dataclass
class ReadingConfig:
    """The keys every reading pipeline's table has; each kind adds its own and its defaults."""

    name: str = setting(name=True)
    model: str = ""  # a model name from the manifest
    source: str = setting("mqtt", parse=reading_source)  # mqtt | csv:<file>[:columns] | stdin
    topic: str = setting("", topic=())  # default: <base>/<kind's topic root>/<name>/reading
    rate: float = setting(1.0, ge=0)  # readings per second when replaying a CSV (0: as fast as possible)


class ReadingPipeline:
    """Sensors and series: readings from MQTT, a CSV or stdin, a bounded queue, one worker thread."""

    kind = "reading"
    topic_root = "readings"  # default input topic: <base>/<topic_root>/<name>/reading

    def __init__(self, cfg: Any, model: Any, publisher: Publisher, queue_size: int) -> None:
        self.cfg, self.name, self.model, self.out = cfg, cfg.name, model, publisher
        self.source = reading_source(cfg.source)
        self.counters = Counters()
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.finished = threading.Event()
        self.lock = threading.Lock()  # held while handling a reading; commands and swaps take it too
        self.last_seq: int | None = None
        self.dropped_at_last_seq = 0  # `counters.dropped` when the last numbered reading was handled
        self.outbox_write = publisher.retry(self.component, "queueing a message in the outbox")
        self.thread = threading.Thread(target=self._work, name=f"{self.kind}:{self.name}", daemon=True)

    @property
    def component(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def finite(self) -> bool:
        return self.source.finite

    def attach(self, subscribe: Subscribe) -> list[Feed]:
        """Connect the input: subscribe to the MQTT topic, or return the feed that reads the file/stdin."""
        if self.source.kind == "mqtt":
            topic = self.cfg.topic or self.out.topics.path(self.topic_root, self.name, "reading")
            subscribe(topic, lambda _topic, payload, ack: self.submit(payload, ack))
            return []
        return [make_feed(self.source, self.cfg.rate, functools.partial(self.submit, block=True), self.end_of_input,
                          getattr(getattr(self.model, "entry", None), "preprocess", None))]

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
                call(item[1])

    def end_of_input(self) -> None:
        self.queue.put(END)

    def stop(self, timeout: float = 5.0) -> None:
        """Drain what is queued (bounded by `timeout`), then stop the worker."""
        self.queue.put(END)
        self.thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return self.counters.as_dict()

    def latency(self) -> dict[str, Any]:
        return {"model": self.model.entry.name, **self.model.latency.summary()}

    def swap(self, model: Any) -> None:
        """A new model between two readings (the worker holds the lock while it handles one)."""
        with self.lock:
            self.model = self.adopt(model)

    def adopt(self, model: Any) -> Any:
        """What a kind carries over to a new model (called under the lock); nothing by default."""
        return model

    def send(self, message: Message) -> None:
        """Queue a result; through a full disk this waits (the reading stays unacknowledged), never drops."""
        self.outbox_write(lambda: self.out.send(message))

    def stalled_for(self) -> float:
        """Seconds a write of this pipeline has been failing (0: it makes progress)."""
        return self.outbox_write.stalled_for()

    def alive(self) -> bool:
        return self.thread.is_alive() or self.finished.is_set() or not self.thread.ident

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
                self.out.report(self.component, f"invalid reading: {exc}", payload)
            except StorageUnavailable:  # stopping while the disk is full: the broker delivers it again
                log.warning("%s: stopped with a reading not handled (storage unavailable)", self.component)
                continue
            except Exception as exc:  # noqa: BLE001 - a bug on one reading must not stop the pipeline
                self.counters.errors += 1
                log.exception("%s: failed on a reading", self.component)
                self.out.report(self.component, f"internal error: {type(exc).__name__}: {exc}", payload)
            call(done)
        self.finished.set()

    def handle(self, payload: bytes | str) -> None:
        raise NotImplementedError

    def count_gaps(self, seq: int | None) -> None:
        """A sender that numbers its readings lets the agent see losses upstream (a broker queue overflow).

        Readings this agent displaced from its own full queue since the last numbered one are in
        the gap too; they are counted in `dropped` already, so `lost` leaves them out.
        """
        if seq is None:
            return
        dropped_here = self.counters.dropped - self.dropped_at_last_seq
        if self.last_seq is not None and seq > self.last_seq + 1:
            self.counters.lost += max(0, seq - self.last_seq - 1 - dropped_here)
        if self.last_seq is None or seq > self.last_seq:
            self.last_seq = seq
            self.dropped_at_last_seq = self.counters.dropped
