"""What made an alert: the features and time steps contributing most to the score, the rule's state, and
the episode the alert belongs to (issue 27, Build 6).

Why: "score 0.0132 > 0.0051" tells a user nothing they can act on. The autoencoder's score is the mean
of per-number squared reconstruction errors, so each number's share of it is exact, not an explanation
fitted afterwards: the temperature two readings ago carrying 80% of the score says where to look. An
episode (quiet -> active -> quiet) gets one id and its onset, so a consumer groups the messages of one
long anomaly as one alert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

TOP = 3  # numbers of the input named in each alert


def column_names(features: list[str], time_features: list[str]) -> list[str]:
    """The name of each number of one reading's row: its features, then sin/cos of each calendar feature
    (`edge.models.sensor_window.reading_rows`' order)."""
    return [*features, *(f"{kind}_{part}" for kind in time_features for part in ("sin", "cos"))]


def contributions(errors: np.ndarray, names: list[str], top: int = TOP) -> dict[str, Any]:
    """Per-number squared errors of one input (oldest reading first) -> the `top` numbers by share of the
    score (`step` 0 is the newest reading, -1 the one before) and each feature's share over the window."""
    errors = np.asarray(errors, np.float64).reshape(-1, len(names))  # (window, columns)
    total = float(errors.sum())
    share = errors / total if total > 0 else np.zeros_like(errors)
    window = errors.shape[0]
    order = np.argsort(share, axis=None)[::-1][:top]
    ranked = [{"feature": names[int(i) % len(names)], "step": int(i) // len(names) - (window - 1),
               "share": round(float(share.flat[int(i)]), 4)} for i in order]
    return {"top": ranked, "features": {n: round(float(s), 4) for n, s in zip(names, share.sum(axis=0))}}


@dataclass
class Episode:
    """One alert episode: from the reading that turned the rule active to the one that turned it quiet."""

    id: str
    onset_ts: Any
    onset_seq: int
    cause: str | None  # the top feature at the onset

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "onset_ts": self.onset_ts, "onset_seq": self.onset_seq, "cause": self.cause}


class EpisodeTracker:
    """Numbers the episodes of one sensor: a new id when the rule turns active, the same until it turns quiet
    (the message saying so still names the episode it ends)."""

    def __init__(self) -> None:
        self.current: Episode | None = None

    def update(self, active: bool, changed: bool, reading_ts: Any, seq: int,
               evidence: dict[str, Any] | None) -> Episode | None:
        if active and (changed or self.current is None):
            top = (evidence or {}).get("top") or [{}]
            self.current = Episode(uuid.uuid4().hex, reading_ts, seq, top[0].get("feature"))
        episode = self.current
        if not active:
            self.current = None
        return episode if active or changed else None


def rule_state(k: int, n: int, above: int, threshold: float, source: str) -> dict[str, Any]:
    """The k-of-n rule as an alert carries it: `above` of the last n scores were above the threshold."""
    return {"k": k, "n": n, "above": above, "threshold": threshold, "threshold_source": source}
