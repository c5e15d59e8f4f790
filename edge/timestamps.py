"""Reading time stamps: which order they have, and what the agent does when a clock jumps.

A Pi has no real-time clock: until NTP answers its clock may be years behind, and a sensor's
clock may be wrong in either direction. The forecaster skips a re-delivered reading by its
`ts` (not after the last one processed), so one reading stamped far in the future would stop
it for good. The policy, per series:
- numbers from 1e9 on are epoch seconds, and ISO-8601 strings are moments; both are *times*.
  Smaller numbers are indices (step counters) and only ordered.
- a time more than `future_tolerance` seconds ahead of the agent's clock is refused as invalid,
  with the reason (and a saved last time stamp that far ahead is forgotten at start);
- a time more than `backward_reset` seconds *before* the last one processed is a clock that
  jumped back (or a sensor replaced): the de-duplication starts afresh from it, with a warning;
- anything else not after the last one is a re-delivery and skipped.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any

from edge.readings import InvalidReading

EPOCH_FLOOR = 1e9  # 2001-09-09 in epoch seconds: a smaller number is an index, not a time


class Verdict(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CLOCK_RESET = "clock_reset"


@dataclass(frozen=True)
class ClockPolicy:
    future_tolerance: float = 300.0
    backward_reset: float = 86400.0

    def judge(self, ts: Any, last_ts: Any, now: float) -> Verdict:
        """NEW, DUPLICATE or CLOCK_RESET for a reading stamped `ts`; InvalidReading if too far ahead."""
        if isinstance(ts, str) and order_key(ts) is None:
            raise InvalidReading(f"'ts' {ts[:40]!r} is neither an ISO-8601 time nor a number: a series orders its "
                                 "readings by it to skip re-deliveries")
        moment = epoch_seconds(ts)
        if moment is not None and moment > now + self.future_tolerance:
            raise InvalidReading(f"'ts' {ts!r} is {moment - now:.0f} s ahead of the agent's clock (more than "
                                 f"future_tolerance = {self.future_tolerance:g} s): refused, the series is not moved")
        new, last = order_key(ts), order_key(last_ts)
        if new is None or last is None or type(new) is not type(last) or new > last:
            return Verdict.NEW
        last_moment = epoch_seconds(last_ts)
        if moment is not None and last_moment is not None and last_moment - moment > self.backward_reset:
            return Verdict.CLOCK_RESET
        return Verdict.DUPLICATE

    def too_far_ahead(self, ts: Any, now: float) -> bool:
        moment = epoch_seconds(ts)
        return moment is not None and moment > now + self.future_tolerance


def order_key(ts: Any) -> float | datetime.datetime | None:
    """A comparable form of a reading's timestamp, or None when it has no order we can trust."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, (int, float)):
        return float(ts)
    if isinstance(ts, str):
        try:
            moment = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
    return None


def epoch_seconds(ts: Any) -> float | None:
    """Epoch seconds for a time stamp that is a time (see the module doc), else None."""
    key = order_key(ts)
    if isinstance(key, datetime.datetime):
        return key.timestamp()
    if isinstance(key, float) and key >= EPOCH_FLOOR:
        return key
    return None
