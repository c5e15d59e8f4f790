"""How pipelines publish: the topic layout, the device name, the link's `send`, and coalesced error reports."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.fileio import WriteRetry
from edge.mqtt.messages import Message, Topics, error, excerpt

log = logging.getLogger(__name__)
Send = Callable[[Message], "bool | None"]
HELD_KINDS = 5  # distinct reasons of held-back reports named in the one that carries them (`held_back`)


@dataclass
class Held:
    """The reports of one component held back in the current interval: how many, the last one, and the first
    HELD_KINDS distinct reasons with their counts (so a burst of mixed faults is not told as its last)."""

    count: int = 0
    reason: str = ""
    payload: bytes | str | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, payload: bytes | str | None) -> None:
        self.count, self.reason, self.payload = self.count + 1, reason, payload
        if reason in self.kinds or len(self.kinds) < HELD_KINDS:
            self.kinds[reason] = self.kinds.get(reason, 0) + 1

    def folded(self, described: str | None = None) -> list[dict[str, object]]:
        """`held_back`: the reasons folded into a report (less one of `described`, the one it describes)."""
        kinds = dict(self.kinds)
        if described in kinds:
            kinds[described] -= 1
        return [{"reason": r[:300], "count": n} for r, n in kinds.items() if n > 0]


class Publisher:
    """How pipelines publish: the topic layout, the device name and the link's `send`.

    Error reports are coalesced per component: at most one every `report_interval` seconds,
    carrying how many were held back (`repeated`) and the first few distinct reasons among them
    (`held_back`), so 1,000 bad readings a second make one
    message and one log line per interval, not 1,000. A report never blocks or raises: when it
    cannot be queued (a full disk) it is counted and logged. `retry` gives a pipeline the
    `WriteRetry` through which its QoS 1 messages wait out a full disk instead of being lost.
    """

    def __init__(self, topics: Topics, device: str, send: Send, stop: threading.Event | None = None,
                 report_interval: float = 10.0) -> None:
        self.topics, self.device, self.send = topics, device, send
        self.stop = stop or threading.Event()
        self.report_interval = report_interval
        self.reports_held_back = 0  # reports folded into a later one
        self.reports_lost = 0  # reports that could not be queued at all
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, Held] = {}  # component -> the reports held back this interval

    def retry(self, component: str, action: str) -> WriteRetry:
        return WriteRetry(component, action, self.stop, report=self.report)

    def report(self, component: str, reason: str, payload: bytes | str | None = None) -> None:
        """Describe a refused input or a failed component on the `error` topic (coalesced, never raises)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(component, -math.inf) < self.report_interval:
                self._held.setdefault(component, Held()).add(reason, payload)
                self.reports_held_back += 1
                return
            self._last[component] = now
            held = self._held.pop(component, Held())
        self._send_report(component, reason, payload, held.count, held.folded())

    def flush(self, everything: bool = False) -> None:
        """Send what was held back once its interval is over (the stats loop), or all of it (at stop).

        The last held-back report goes out with `repeated` = the others, so every refused input
        is described or counted: reports + their `repeated` = the pipeline's `invalid` count.
        """
        now = time.monotonic()
        with self._lock:
            due = [(c, held) for c, held in self._held.items()
                   if everything or now - self._last.get(c, 0) >= self.report_interval]
            for component, _ in due:
                del self._held[component]
                self._last[component] = now
        for component, held in due:
            self._send_report(component, held.reason, held.payload, held.count - 1, held.folded(held.reason))

    def _send_report(self, component: str, reason: str, payload: bytes | str | None, repeated: int,
                     held_back: list[dict[str, object]]) -> None:
        raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
        suffix = f" ({repeated} more since the last report)" if repeated else ""
        log.warning("%s: %s%s", component, reason, suffix)
        try:
            self.send(error(self.topics, self.device, component=component, reason=reason,
                            input_excerpt=excerpt(raw) if raw is not None else None, repeated=repeated,
                            held_back=held_back))
        except Exception as exc:  # noqa: BLE001 - reporting must never take the reporting thread down (a full disk)
            self.reports_lost += 1
            log.warning("could not queue the error report of %s (%s: %s)", component, type(exc).__name__, exc)
