"""Which broker the link connects to: the ordered list `mqtt.brokers`, down it on failure and back up it later.

The first broker that answers is used. When the connection to it cannot be made, the next one is tried
at once; only after every broker of the list has failed in a row does the link wait out its backoff
(one broker: exactly the old behaviour). A connection that held and then ended starts again from the
top of the list, so an agent returns to its first choice as soon as that one answers. While it is on a
later broker, every `failback_after` seconds the earlier ones are asked for a TCP connection; when one
accepts, the link leaves the later broker cleanly (no Last Will) and connects there. The outbox and
the inbox know nothing of this: a new connection is a new connection, whichever broker it goes to,
and the outbox replays everything not acknowledged on it (at-least-once across the switch).
"""

from __future__ import annotations

import logging
import socket
import time

from edge.mqtt.config import BrokerAddress

log = logging.getLogger(__name__)
PROBE_TIMEOUT = 1.0  # seconds for the TCP connect that asks whether an earlier broker is back


class BrokerChoice:
    def __init__(self, brokers: list[BrokerAddress], failback_after: float) -> None:
        if not brokers:
            raise ValueError("at least one broker")
        self.brokers = brokers
        self.failback_after = failback_after
        self.index = 0
        self.switches = 0  # connections made to another broker than the one before (stats)
        self._failures = 0  # attempts failed in a row
        self._last_connected: int | None = None
        self._checked = 0.0

    @property
    def current(self) -> BrokerAddress:
        return self.brokers[self.index]

    def failed(self) -> bool:
        """The current broker could not be reached: move to the next. True when the whole list has failed
        in a row (time for the backoff)."""
        self._failures += 1
        self.index = (self.index + 1) % len(self.brokers)
        return self._failures % len(self.brokers) == 0

    def connected(self) -> None:
        self._failures = 0
        if self._last_connected is not None and self._last_connected != self.index:
            self.switches += 1
            log.warning("MQTT failed over to broker %d of %d, %s", self.index + 1, len(self.brokers), self.current)
        self._last_connected = self.index
        self._checked = time.monotonic()

    def dropped(self) -> None:
        """A connection that held has ended: the next attempt starts from the top of the list."""
        self.index = 0

    def switch_to(self, index: int) -> None:
        self.index = index

    def earlier_answers(self) -> int | None:
        """On a later broker, once per `failback_after` s: the index of the first earlier broker that accepts a
        TCP connection (the link then goes back to it), else None. Blocks up to a second per broker asked."""
        if self.index == 0 or time.monotonic() - self._checked < self.failback_after:
            return None
        self._checked = time.monotonic()
        for index, broker in enumerate(self.brokers[:self.index]):
            try:
                with socket.create_connection((broker.host, broker.port), timeout=PROBE_TIMEOUT):
                    log.info("MQTT broker %s answers again: going back to it from %s", broker, self.current)
                    return index
            except OSError:
                continue
        return None
