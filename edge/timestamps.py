"""Reading time stamps: which of them are times, which order they have, and what the agent does when a clock jumps.

**The one rule for "is this a time"**: a `ts` string must be an ISO-8601 date or date-time
(`2026-01-31T12:00:00Z`, `2026-01-31`, or a month `1949-01`): anything else (`"2026-13-01"`,
`"zzz"`) is refused as an invalid reading, with the reason, because a string that is no date has no
order and a forecaster could not skip its re-deliveries. A number is epoch seconds from
`EPOCH_FLOOR` (1e9, 2001-09-09) on, and below it a counter (a step index): an order, no clock.
Why 1e9 and not 1e8 (1973): a sender's counter is the number that must never pass for a clock, and
a 10 Hz sensor counts past 1e8 in four months but past 1e9 only after three years; no clock a Pi or
a sensor runs today reads before 2001 unless it is wrong, and a wrong clock is no clock either. The
sensor's alert ledger and `cmd/calibrate` (`clock_seconds`), the series' de-duplication
(`epoch_seconds`, `order_key`) and the trainer all ask this module.

Two ways to read a time, for two purposes: `epoch_seconds` is the moment (a time zone is honoured:
the agent compares it with its own clock), `to_seconds` is the wall clock a reading was written in,
read as if UTC (the calendar features a model learnt: noon is noon in the zone the stream was
written in); for spans and rates the two agree.

A Pi has no real-time clock: until NTP answers its clock may be years behind, and a sensor's
clock may be wrong in either direction; a sensor that counts from 0 restarts its counter when it
reboots. The forecaster skips a re-delivered reading by its `ts` (not after the last one
processed), so one reading stamped far in the future -- or a counter restarted -- would stop it.
The policy, per series:
- times are compared as moments, counters as numbers;
- a time more than `future_tolerance` seconds ahead of the agent's clock is refused as invalid (a sensor's too),
  with the reason (and a saved last time stamp that far ahead is forgotten at start);
- a `ts` more than `backward_reset` (seconds, or counts for a counter) *before* the last one
  processed, or a switch between a counter and a time (`"ts": 0` after epoch seconds: a sender
  rebooted), is a clock reset: de-duplication starts afresh from it, with a warning on the
  `error` topic and `clock_resets` in `stats` -- never a silent duplicate;
- anything else not after the last one is a re-delivery and skipped (`duplicates`).
"""

from __future__ import annotations

import datetime
import enum
import math
import re
from dataclasses import dataclass
from typing import Any

EPOCH_FLOOR = 1e9  # 2001-09-09 in epoch seconds: a smaller number is a counter, not a time (see above)
MAX_TS_CHARS = 64
MAX_TS_NUMBER = 2.0**63
_MONTH = re.compile(r"[+-]?\d{4}-\d{2}")  # ISO-8601's year-month, which fromisoformat does not read


class InvalidTime(ValueError):
    """A `ts` that is no time and no counter; the message says why and what would be."""


class Verdict(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CLOCK_RESET = "clock_reset"


@dataclass(frozen=True)
class ClockPolicy:
    future_tolerance: float = 300.0
    backward_reset: float = 86400.0

    def judge(self, ts: Any, last_ts: Any, now: float) -> Verdict:
        """NEW, DUPLICATE or CLOCK_RESET for a reading stamped `ts`; InvalidTime if too far ahead."""
        self.not_ahead(ts, now, "the series is not moved")
        new, last = order_key(ts), order_key(last_ts)
        if new is None or last is None:
            return Verdict.NEW
        if new[0] != last[0] or last[1] - new[1] > self.backward_reset:
            return Verdict.CLOCK_RESET
        return Verdict.NEW if new[1] > last[1] else Verdict.DUPLICATE

    def not_ahead(self, ts: Any, now: float, consequence: str) -> None:
        """InvalidTime (saying `consequence`) for a time more than `future_tolerance` ahead of `now`: one
        reading stamped in 2099 would otherwise stretch a sensor's days to decades, or stop a series."""
        if self.too_far_ahead(ts, now):
            raise InvalidTime(f"'ts' {ts!r} is {epoch_seconds(ts) - now:.0f} s ahead of the agent's clock (more than "
                              f"future_tolerance = {self.future_tolerance:g} s): refused, {consequence}")

    def too_far_ahead(self, ts: Any, now: float) -> bool:
        moment = epoch_seconds(ts)
        return moment is not None and moment > now + self.future_tolerance


def checked(ts: Any) -> Any:
    """A reading's `ts` as given if it is a time or a counter (the rule above), else InvalidTime."""
    if ts is None:
        return None
    if isinstance(ts, bool) or not isinstance(ts, (str, int, float)):
        raise InvalidTime(f"'ts' is {type(ts).__name__}, expected epoch seconds, a counter or an ISO-8601 date")
    if isinstance(ts, str):
        if len(ts) > MAX_TS_CHARS:
            raise InvalidTime(f"'ts' is a string of {len(ts)} characters, expected at most {MAX_TS_CHARS}")
        if iso_moment(ts) is None:
            raise InvalidTime(f"'ts' {ts!r} is not an ISO-8601 date or time (e.g. 2026-01-31T12:00:00Z, 2026-01-31, "
                              f"1949-01): {_iso_problem(ts)}; send epoch seconds, a counter, a date, or no 'ts'")
        return ts
    if isinstance(ts, int) and ts.bit_length() > 64 or not (math.isfinite(ts) and abs(ts) <= MAX_TS_NUMBER):
        shown = f"{ts:.3g}" if isinstance(ts, float) or ts.bit_length() <= 1000 else "a huge integer"
        raise InvalidTime(f"'ts' is {shown}; expected a finite number of at most 2**63 (epoch seconds or a counter)")
    return ts


def iso_moment(text: str) -> datetime.datetime | None:
    """An ISO-8601 date, date-time or year-month as an aware moment (naive: UTC), or None."""
    text = text.strip()
    if _MONTH.fullmatch(text):
        text += "-01"
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _iso_problem(text: str) -> str:
    try:
        datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        return str(exc)
    return "out of range"  # pragma: no cover - parsed above but not as a moment


def order_key(ts: Any) -> tuple[str, float] | None:
    """A comparable form of a reading's timestamp -- `("time", epoch seconds)` or `("counter", n)` -- or None
    when it has no order we can trust. Two keys of different families are not ordered: a switch is a reset."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, (int, float)):
        if isinstance(ts, int) and ts.bit_length() > 64 or not math.isfinite(ts):
            return None
        return ("time", float(ts)) if ts >= EPOCH_FLOOR else ("counter", float(ts))
    if isinstance(ts, str):
        moment = iso_moment(ts)
        return None if moment is None else ("time", _timestamp(moment))
    return None


def _timestamp(moment: datetime.datetime) -> float:
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):  # year 1 in a zone east of UTC, year 9999 west of it
        return (moment.replace(tzinfo=None) - datetime.datetime(1970, 1, 1)).total_seconds()


def epoch_seconds(ts: Any) -> float | None:
    """Epoch seconds for a time stamp that is a time (see the module doc), else None."""
    key = order_key(ts)
    return key[1] if key is not None and key[0] == "time" else None


def to_seconds(ts: Any) -> float | None:
    """A reading's time stamp as seconds on its own wall clock: finite numbers as they are (a time or a
    counter: see `clock_seconds`), ISO-8601 strings read as UTC whatever their zone (the time of day is the
    clock's); anything else None."""
    if isinstance(ts, bool) or ts is None:
        return None
    if isinstance(ts, (int, float)):
        if isinstance(ts, int) and ts.bit_length() > 64:
            return None
        return float(ts) if math.isfinite(ts) else None
    if isinstance(ts, str):
        moment = iso_moment(ts)
        if moment is None:
            return None
        return (moment.replace(tzinfo=None) - datetime.datetime(1970, 1, 1)).total_seconds()
    return None


def clock_seconds(ts: Any) -> float | None:
    """A reading's `ts` as wall-clock seconds when it is a time (the rule above), else None: `"ts": 17`
    is a counter, an order but no clock."""
    seconds = to_seconds(ts)
    if seconds is not None and not isinstance(ts, str) and seconds < EPOCH_FLOOR:
        return None
    return seconds
