"""Noticing that another client uses this agent's client id (two Pis given the same device_id).

The broker allows one connection per client id: each new CONNECT closes the older one. Two agents
with the same id therefore kick each other off for ever, each "connected" a moment at a time, and
without a word the user sees only gaps. MQTT 5 can say so (DISCONNECT with reason 0x8E, "session
taken over"), but mosquitto 2.0.11 closes the socket without it (seen with a raw socket), as it
must on 3.1.1: so a run of connections closed by the broker soon after it accepted them is the
sign (unless a connect attempt failed meanwhile: then the broker went away), and a 0x8E, when one comes, is
proof at once. Either way the link is told to keep its
backoff growing (a takeover war at `reconnect_min` would be a tight loop for both devices), one
sentence is logged, and `problem()` feeds the agent's `problems` (stats, status) until a
connection lasts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

TAKEN_OVER = "client_id_taken_over"
SESSION_TAKEN_OVER = 0x8E  # MQTT 5 reason code of the DISCONNECT the broker sends to the older connection
SHORT_DROPS = 3  # without a 0x8E: this many connections in a row closed soon after connecting
GRACE_S = 5.0  # "soon": within reconnect_max + this (the other agent reconnects within its backoff)


class TakeoverWatch:
    def __init__(self, client_id: str, reconnect_max: float) -> None:
        self.client_id = client_id
        self.short_after = reconnect_max + GRACE_S
        self.short_drops = 0
        self.takeovers = 0  # connections ended by a takeover (0x8E) or a run of likely ones, for stats
        self._since: float | None = None
        self._problem: str | None = None

    def connected(self) -> None:
        self._since = time.monotonic()

    def dropped(self, reason: Any) -> bool:
        """A connection we did not end has ended; True when it looks like a takeover, so the reconnect
        backoff must keep growing instead of starting again from `reconnect_min`."""
        if self._since is None:
            return False
        lasted, self._since = time.monotonic() - self._since, None
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
            self.takeovers += 1
            self._report(f"the broker ended the connection with 'session taken over' ({lasted:.1f} s after "
                         "connecting)")
            return True
        if lasted > self.short_after:
            self.short_drops = 0
            return False
        self.short_drops += 1
        if self.short_drops >= SHORT_DROPS:
            self.takeovers += 1
            self._report(f"the broker closed {self.short_drops} connections in a row within {self.short_after:.0f} s "
                         "of accepting them")
        return True

    def unreachable(self) -> None:
        """A connect attempt failed (refused, unreachable): a broker that is gone closed those connections, not
        another client -- a broker crash-looping or killed again and again is no takeover (a user's trial
        with a flapping first broker was told to hunt for a duplicate device)."""
        self.short_drops = 0

    def problem(self) -> str | None:
        """The takeover sentence while it lasts; cleared once a connection has held past the short window."""
        if self._problem and self._since is not None and time.monotonic() - self._since > self.short_after:
            log.info("MQTT client id %r: the connection has held for %.0f s; no other client took it over",
                     self.client_id, self.short_after)
            self._problem, self.short_drops = None, 0
        return self._problem

    def _report(self, evidence: str) -> None:
        if self._problem is None:  # one sentence per episode, not one per reconnect
            self._problem = (f"{TAKEN_OVER}: another client uses client id {self.client_id!r}: two devices with "
                             f"the same device_id? ({evidence}; give each device its own device_id and "
                             "mqtt.client_id; retrying with growing backoff)")
            log.error("MQTT %s", self._problem)
