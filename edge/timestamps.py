"""Reading time stamps: which of them are times, which order they have, and what the agent does when a clock jumps.

**The one rule for "is this a time"**: an ISO-8601 string is a moment; a number is epoch seconds
from `EPOCH_FLOOR` (1e9, 2001-09-09) on, and below it an index (a step counter): an order, no clock.
Why 1e9 and not 1e8 (1973): a sender's counter is the number that must never pass for a clock, and
a 10 Hz sensor counts past 1e8 in four months but past 1e9 only after three years; no clock a Pi or
a sensor runs today reads before 2001 unless it is wrong, and a wrong clock is no clock either. The
sensor's alert ledger and `cmd/calibrate` (`clock_seconds`), the series' de-duplication
(`epoch_seconds`) and the trainer all ask this module.

Two ways to read a time, for two purposes: `epoch_seconds` is the moment (a time zone is honoured:
the agent compares it with its own clock), `to_seconds` is the wall clock a reading was written in,
read as if UTC (the calendar features a model learnt: noon is noon in the zone the stream was
written in); for spans and rates the two agree.

A Pi has no real-time clock: until NTP answers its clock may be years behind, and a sensor's
clock may be wrong in either direction. The forecaster skips a re-delivered reading by its
`ts` (not after the last one processed), so one reading stamped far in the future would stop
it for good. The policy, per series:
- times (see above) are compared as moments; indices are only ordered;
- a time more than `future_tolerance` seconds ahead of the agent's clock is refused as invalid,
  with the reason (and a saved last time stamp that far ahead is forgotten at start);
- a time more than `backward_reset` seconds *before* the last one processed is a clock that
  jumped back (or a sensor replaced): the de-duplication starts afresh from it, with a warning;
- anything else not after the last one is a re-delivery and skipped;
- a string that is not ISO-8601 (a label such as "m12") has no order: it is carried to `reading_ts`
  but cannot be used to skip re-deliveries.
"""

from __future__ import annotations

import datetime
import enum
import math
from dataclasses import dataclass
from typing import Any

from edge.readings import InvalidReading

EPOCH_FLOOR = 1e9  # 2001-09-09 in epoch seconds: a smaller number is an index, not a time (see above)


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


def to_seconds(ts: Any) -> float | None:
    """A reading's time stamp as seconds on its own wall clock: finite numbers as they are (a time or an
    index: see `clock_seconds`), ISO-8601 strings read as UTC whatever their zone (the time of day is the
    clock's); anything else None."""
    if isinstance(ts, bool) or ts is None:
        return None
    if isinstance(ts, (int, float)):
        return float(ts) if math.isfinite(ts) else None
    if isinstance(ts, str):
        try:
            moment = datetime.datetime.fromisoformat(ts.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is not None:  # keep the wall clock of the zone the stream was written in
            moment = moment.replace(tzinfo=None)
        return (moment - datetime.datetime(1970, 1, 1)).total_seconds()
    return None


def clock_seconds(ts: Any) -> float | None:
    """A reading's `ts` as wall-clock seconds when it is a time (the rule above), else None: `"ts": 17`
    is a counter, an order but no clock."""
    seconds = to_seconds(ts)
    if seconds is not None and not isinstance(ts, str) and seconds < EPOCH_FLOOR:
        return None
    return seconds
