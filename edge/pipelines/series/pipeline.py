"""A time series: readings -> one LSTM step (state carried and saved) -> `forecast/<name>`.

The forecast goes to the outbox *before* the state is saved, so a crash in between repeats
this reading (the same forecast again) rather than losing its forecast; a re-delivered
reading (its `ts` not after the last one processed) is skipped and counted as a duplicate.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from edge.fields import setting
from edge.pipelines.base import ReadingConfig, ReadingPipeline
from edge.pipelines.publisher import Publisher
from edge.pipelines.series.forecaster import Forecaster
from edge.pipelines.series.messages import forecast
from edge.readings import InvalidReading, parse_reading
from edge.timestamps import ClockPolicy, InvalidTime, Verdict, order_key

log = logging.getLogger(__name__)


@dataclass
class CoverageLedger:
    """Forecasts scored since the agent started and, per interval, how many observed values fell inside."""

    scored: int = 0
    inside: list[int] = field(default_factory=list)

    def add(self, hits: tuple[bool, ...]) -> None:
        if len(self.inside) != len(hits):  # another model, other intervals: count afresh
            self.scored, self.inside = 0, [0] * len(hits)
        self.scored += 1
        self.inside = [n + bool(h) for n, h in zip(self.inside, hits)]

    def summary(self, nominal: tuple[float, ...]) -> dict[str, Any]:
        rows = [{"nominal": c, "inside": n, "observed": n / self.scored if self.scored else None}
                for c, n in zip(nominal, self.inside or [0] * len(nominal))]
        return {"scored": self.scored, "coverage": rows}


@dataclass
class SeriesConfig(ReadingConfig):
    model: str = "lstm"
    future_tolerance: float = setting(300.0, gt=0)  # seconds a reading's time may be ahead of the agent's clock
    backward_reset: float = setting(86400.0, gt=0)  # a jump back in time larger than this restarts de-duplication
    unit: str = setting("")  # the series' unit (e.g. "passengers", "°C"): Home Assistant's unit_of_measurement


class SeriesPipeline(ReadingPipeline):
    kind = "series"
    topic_root = "series"
    model: Forecaster

    def __init__(self, cfg: SeriesConfig, forecaster: Forecaster, publisher: Publisher, queue_size: int) -> None:
        super().__init__(cfg, forecaster, publisher, queue_size)
        self.clock = ClockPolicy(cfg.future_tolerance, cfg.backward_reset)
        self.seen: collections.deque[Any] = collections.deque(maxlen=512)  # ts processed by this run, newest last
        self.state_write = publisher.retry(self.component, "saving the forecaster state")
        self.ledger = CoverageLedger()
        if self.clock.too_far_ahead(forecaster.last_ts, time.time()):
            publisher.report(self.component, f"the saved last time stamp {forecaster.last_ts!r} is ahead of the "
                                             "agent's clock; forgotten, so readings are not skipped until then")
            forecaster.last_ts = None

    def handle(self, payload: bytes | str) -> None:
        reading = parse_reading(payload, expected=1)
        self.count_gaps(reading.seq)
        try:
            verdict = self.clock.judge(reading.ts, self.model.last_ts, time.time())
        except InvalidTime as exc:
            raise InvalidReading(str(exc)) from None
        if verdict is Verdict.DUPLICATE:
            self._skip(reading.ts)
            return
        if verdict is Verdict.CLOCK_RESET:
            self.counters.clock_resets += 1
            self.seen.clear()
            self.out.report(self.component, f"time stamps jumped from {self.model.last_ts!r} to {reading.ts!r} (back "
                            f"more than backward_reset = {self.clock.backward_reset:g}, or between a counter and a "
                            "time): the sender's clock or counter was reset; de-duplication starts afresh")
        try:
            made = self.model.step(reading.values[0])
        except ValueError as exc:  # e.g. a value the series transform cannot take (log of <= 0)
            raise InvalidReading(str(exc)) from None
        if self.model.scored is not None:
            self.ledger.add(self.model.scored)
        if made is not None:
            self.send(forecast(self.out.topics, self.out.device, self.model.ref, self.name,
                               observed=reading.values[0], forecast_value=made.value,
                               step=self.model.step_index - 1, reading_ts=reading.ts, bounds=made.bounds))
            self.counters.published += 1
        self.state_write(lambda: self.model.commit(reading.ts))
        self.seen.append(reading.ts)

    def _skip(self, ts: Any) -> None:
        """A reading not after the last one processed: a re-delivery -- or, if this run processed readings
        on both sides of it but never it, one delivered out of order (an LSTM cannot step back: said)."""
        oldest, key = (order_key(self.seen[0]) if self.seen else None), order_key(ts)
        if ts in self.seen or oldest is None or key is None or key[0] != oldest[0] or key[1] <= oldest[1]:
            self.counters.duplicates += 1
            log.info("%s: reading ts=%r is not after the last one processed; skipped as a re-delivery",
                     self.component, ts)
            return
        self.counters.late += 1
        self.out.report(self.component, f"reading ts={ts!r} arrived after a later one was processed: skipped (a "
                                        "forecaster cannot step back). The broker delivered QoS 1 readings out of "
                                        "order (mosquitto 2.0 can when the agent's in-flight window is full)")

    def quality(self) -> dict[str, Any]:
        """How often the observed value fell inside each interval of its forecast, beside the nominal (`stats`)."""
        return self.ledger.summary(self.model.coverage)

    def stalled_for(self) -> float:
        return max(super().stalled_for(), self.state_write.stalled_for())

    # --- what commands change, each under the pipeline's lock ------------------------------
    def reset(self) -> None:
        with self.lock:
            self.model.reset()
            self.seen.clear()

    def adopt(self, forecaster: Forecaster) -> Forecaster:
        """The new model continues the live series (not the file on disk, which may be a step behind)."""
        forecaster.continue_from(self.model)
        return forecaster
