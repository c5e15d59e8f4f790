"""The forecaster's state on disk: written atomically, checked on load, never a crash loop.

A restart must continue the series where it stopped (the same forecasts as an uninterrupted
run), so the LSTM state (h, c), the window of recent values and the step count are saved
after every step: a temp file, fsync, then rename, so the file is always the old or the
new state. A file that is torn or corrupt anyway (checksum mismatch, bad JSON) or that
belongs to another model (sha256) is set aside with a logged warning and the forecaster
starts cold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.fileio import atomic_write

log = logging.getLogger(__name__)
STATE_VERSION = 1


@dataclass(frozen=True)
class SavedState:
    state: list[list]
    window: list[float]
    step: int
    last_ts: Any = None  # the timestamp of the last reading processed (re-deliveries are skipped)


def _checksum(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class ForecasterState:
    def __init__(self, path: Path | str, model_sha: str) -> None:
        self.path = Path(path)
        self.model_sha = model_sha
        self.warning: str | None = None  # why the last load started cold, for the `error` topic

    def save(self, state: Iterable[np.ndarray], window: Iterable[float], step: int, last_ts: Any = None) -> None:
        body = {"version": STATE_VERSION, "model_sha": self.model_sha, "step": int(step), "last_ts": last_ts,
                "state": [np.asarray(s, np.float64).tolist() for s in state], "window": [float(v) for v in window]}
        atomic_write(self.path, json.dumps({"body": body, "sha256": _checksum(body)}), mode=0o600)

    def load(self) -> SavedState | None:
        """The saved state, or None (no file, or a bad one: set aside with a warning)."""
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text())
            body = data["body"]
            if data["sha256"] != _checksum(body):
                raise ValueError("checksum mismatch (torn or edited file)")
            if body["version"] != STATE_VERSION:
                raise ValueError(f"state version {body['version']} is not {STATE_VERSION}")
            if body["model_sha"] != self.model_sha:
                raise ValueError("saved for another model (sha256 differs)")
            return SavedState(body["state"], body["window"], int(body["step"]), body.get("last_ts"))
        except (ValueError, KeyError, TypeError, OSError) as exc:
            aside = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
            self.warning = f"state file {self.path} unusable ({exc}); moved to {aside.name}, starting cold"
            log.warning("%s", self.warning)
            try:
                self.path.rename(aside)
            except OSError:
                pass
            return None
