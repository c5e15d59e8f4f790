"""The motion gate: run the model on a region only when it changed, or when the heartbeat is due.

The change score is the mean absolute difference between the region now and the region at its
last classification, both averaged down to a small grid (block means: sensor noise averages out)
and with their mean brightness removed (a light turning on or a cloud changes every pixel by
about the same amount: not a change of state). Comparing with the last *classified* view, not
the previous frame, means a slow drift still adds up to a classification.
"""

from __future__ import annotations

import numpy as np

GRID = 16  # the region is compared at (at most) GRID x GRID block means


def block_means(gray: np.ndarray, grid: int = GRID) -> np.ndarray:
    """(H, W) float -> (min(H, grid), min(W, grid)) means of near-equal blocks."""
    h, w = gray.shape
    rows = np.linspace(0, h, min(h, grid) + 1).astype(int)[:-1]
    cols = np.linspace(0, w, min(w, grid) + 1).astype(int)[:-1]
    sums = np.add.reduceat(np.add.reduceat(gray, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))
    return sums / counts


def change_score(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| of two block-mean grids after each loses its mean (brightness changes cancel)."""
    if a.shape != b.shape:
        return float("inf")  # the frame size changed: always a change
    return float(np.mean(np.abs((a - a.mean()) - (b - b.mean()))))


class MotionGate:
    """Decides, frame by frame, whether a region's model runs; counts the invokes it saved."""

    def __init__(self, threshold: float, heartbeat: float, enabled: bool = True) -> None:
        self.threshold, self.heartbeat, self.enabled = threshold, heartbeat, enabled
        self.reference: np.ndarray | None = None
        self.last_run = 0.0
        self.skipped = 0
        self.last_score = 0.0

    def decide(self, gray: np.ndarray, now: float, force: bool = False) -> bool:
        """True: classify this view (and remember it as the reference); False: skipped and counted.

        `force`: the caller needs this classification whatever the score (a state change waiting
        for its K confirmations)."""
        small = block_means(gray)
        if now < self.last_run:  # a replayed file started again
            self.last_run = now
        due = self.reference is None or now - self.last_run >= self.heartbeat
        self.last_score = change_score(small, self.reference) if self.reference is not None else float("inf")
        if not (force or due or not self.enabled or self.last_score >= self.threshold):
            self.skipped += 1
            return False
        self.reference, self.last_run = small, now
        return True
