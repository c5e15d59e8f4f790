"""How pipelines publish: the topic layout, the device name, the link's `send`, and coalesced error reports."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from edge.fileio import WriteRetry
from edge.mqtt.messages import Message, Topics, error, excerpt

log = logging.getLogger(__name__)
Send = Callable[[Message], "bool | None"]


class Publisher:
    """How pipelines publish: the topic layout, the device name and the link's `send`.

    Error reports are coalesced per component: at most one every `report_interval` seconds,
    carrying how many were held back (`repeated`), so 1,000 bad readings a second make one
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
        self._held: dict[str, tuple[int, str, bytes | str | None]] = {}  # component -> (count, reason, input)

    def retry(self, component: str, action: str) -> WriteRetry:
        return WriteRetry(component, action, self.stop, report=self.report)

    def report(self, component: str, reason: str, payload: bytes | str | None = None) -> None:
        """Describe a refused input or a failed component on the `error` topic (coalesced, never raises)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(component, -math.inf) < self.report_interval:
                held = self._held.get(component, (0, "", None))[0] + 1
                self._held[component] = (held, reason, payload)
                self.reports_held_back += 1
                return
            self._last[component] = now
            repeated = self._held.pop(component, (0, "", None))[0]
        self._send_report(component, reason, payload, repeated)

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
        for component, (count, reason, payload) in due:
            self._send_report(component, reason, payload, count - 1)

    def _send_report(self, component: str, reason: str, payload: bytes | str | None, repeated: int) -> None:
        raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
        suffix = f" ({repeated} more since the last report)" if repeated else ""
        log.warning("%s: %s%s", component, reason, suffix)
        try:
            self.send(error(self.topics, self.device, component=component, reason=reason,
                            input_excerpt=excerpt(raw) if raw is not None else None, repeated=repeated))
        except Exception as exc:  # noqa: BLE001 - reporting must never take the reporting thread down (a full disk)
            self.reports_lost += 1
            log.warning("could not queue the error report of %s (%s: %s)", component, type(exc).__name__, exc)
