"""A rollout's plan and record, pure: cohorts by hash, the failure bound, the state kept retained on the broker.

Cohorts are by sha256 of the device id, not by the order devices happen to be listed or seen, so a re-run
(or a restarted controller) picks the same canaries, and which devices go first is not up to whoever named
them in `--to`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge.numbers import loads

#: a device's states in a rollout; FINISHED ones are never shipped again
SUCCESS = ("promoted",)
FAILURE = ("rolled_back", "refused", "no_answer", "no_verdict")
FINISHED = (*SUCCESS, *FAILURE, "skipped", "rolled_back_on_halt")


def parse_stages(text: str) -> list[float]:
    """`5,25,100` -> cumulative percentages, each in (0, 100], increasing."""
    try:
        stages = [float(p) for p in text.split(",")]
    except ValueError:
        raise ValueError(f"--stages {text!r}: expected percentages like 5,25,100") from None
    if not stages or any(not 0 < p <= 100 for p in stages) or stages != sorted(set(stages)):  # NaN: not in range
        raise ValueError(f"--stages {text!r}: cumulative percentages, each in (0, 100], increasing (like 5,25,100)")
    return stages


def cohorts(devices: list[str], stages: list[float]) -> list[list[str]]:
    """The devices in sha256 order, cut at each cumulative percentage: a stage ends at the number of devices
    that percentage covers, rounded down (a 34% canary of 3 devices is 1, not 2), but the first stage has at
    least one device and each later one at least one more than the stage before, so no stage is merged away
    silently; a stage that would add nobody (the devices are used up) is dropped."""
    ordered = sorted(set(devices), key=lambda d: hashlib.sha256(d.encode()).hexdigest())
    out, start = [], 0
    for percent in stages:
        end = min(len(ordered), max(start + 1, math.floor(len(ordered) * percent / 100 + 1e-9)))
        if end > start:
            out.append(ordered[start:end])
        start = end
    return out


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


@dataclass(frozen=True)
class Bound:
    """`--max-failed`: a count (`2`) or a share of the stage (`10%`); the stage halts when failures exceed it."""

    value: float
    percent: bool

    @classmethod
    def parse(cls, text: str) -> Bound:
        """`2` (a whole count of devices) or `10%` (finite, 0 to 100); NaN or inf would never be exceeded."""
        percent = text.endswith("%")
        number = text[:-1] if percent else text
        usage = "expected a count of devices (2) or a share of the stage from 0% to 100% (10%)"
        try:
            value = float(number) if percent else int(number)
        except ValueError:
            hint = "; a count is a whole number (write 1.5% for a share)" if not percent and _is_number(number) else ""
            raise ValueError(f"--max-failed {text!r}: {usage}{hint}") from None
        if not math.isfinite(value) or value < 0 or (percent and value > 100):
            raise ValueError(f"--max-failed {text!r}: {usage}")
        return cls(float(value), percent)

    def exceeded(self, failed: int, size: int) -> bool:
        return failed > (self.value * size / 100 if self.percent else self.value)

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class RolloutState:
    """What `_fleet/rollout/<id>` holds (retained): enough for another controller to carry on."""

    rollout: str
    bundle: str
    version: str
    stages: list[list[str]]
    max_failed: str
    stage: int = 0
    state: str = "running"  # running, done, halted
    reason: str | None = None
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> state, reason, stage, ts
    ts: str = field(default_factory=now_iso)
    controller: str | None = None  # the lock owner of the controller running it (fleet/lock.py)
    started: str | None = None  # when that controller claimed the devices: with `controller`, the order of claims

    def mark(self, device: str, state: str, reason: str | None = None) -> None:
        stage = next((i for i, s in enumerate(self.stages) if device in s), None)
        self.devices[device] = {"state": state, "reason": reason, "stage": stage, "ts": now_iso()}

    def of(self, device: str) -> str | None:
        return (self.devices.get(device) or {}).get("state")

    def failed(self, stage: list[str]) -> list[str]:
        return [d for d in stage if self.of(d) in FAILURE]

    def encode(self) -> bytes:
        self.ts = now_iso()
        return json.dumps({"v": 1, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def decode(cls, payload: bytes) -> RolloutState:
        """ValueError or TypeError for a record this controller did not write (wrong shape, unknown fields)."""
        data = loads(payload)
        if not isinstance(data, dict) or data.pop("v", None) != 1:
            raise ValueError("not a version 1 rollout record")
        state = cls(**data)
        if not (isinstance(state.stages, list) and all(isinstance(s, list) for s in state.stages)
                and isinstance(state.devices, dict) and isinstance(state.stage, int)
                and all(isinstance(d, dict) for d in state.devices.values())):
            raise ValueError("stages, stage or devices of the wrong type")
        Bound.parse(str(state.max_failed))  # a bound this version would refuse (NaN) is refused here too
        return state
