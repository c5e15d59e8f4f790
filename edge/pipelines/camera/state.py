"""A region's debounced state: it changes only after K consecutive confident classifications agree.

One frame of a hand in front of the door, or a flicker the motion gate let through, must not flip
"closed" to "open" and back (two notifications, two snapshots). A classification below the
confidence floor breaks a streak; so does one for another label.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegionState:
    """What `vision/<camera>/<region>/state` says."""

    label: str
    confidence: float
    since: str  # UTC ISO 8601: the first of the K classifications that confirmed it
    previous: str | None  # the label before (None: the first state since the agent started)
    seq: int = 0  # the camera frame that confirmed it


class Debouncer:
    def __init__(self, confirm: int, min_confidence: float) -> None:
        self.confirm, self.min_confidence = confirm, min_confidence
        self.state: RegionState | None = None
        self.candidate: str | None = None
        self.candidate_since = ""
        self.count = 0
        self.changes = 0

    @property
    def pending(self) -> bool:
        """A confident label other than the state has been seen and awaits its confirmations."""
        return self.candidate is not None

    def update(self, label: str, confidence: float, now_iso: str, seq: int = 0) -> RegionState | None:
        """Feed one classification; the new state when this one confirmed a change, else None."""
        current = self.state.label if self.state else None
        if confidence < self.min_confidence or label == current:
            self.candidate, self.count = None, 0
            return None
        if label == self.candidate:
            self.count += 1
        else:
            self.candidate, self.count, self.candidate_since = label, 1, now_iso
        if self.count < self.confirm:
            return None
        self.state = RegionState(label, confidence, self.candidate_since, current, seq)
        self.candidate, self.count = None, 0
        self.changes += 1
        return self.state
