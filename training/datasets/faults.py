"""Faults injected into real normal readings, labelled by construction: spikes, level shifts, drift,
stuck sensors and noise bursts.

Used twice: the autoencoder's window sweep asks which window makes injected faults stand out of
the normal period best, and `python -m training realdata sensors` builds labelled test streams from real
recordings. Magnitudes are in units of the feature's spread in the normal period (its standard
deviation, and the standard deviation of its step-to-step changes for noise), so the same fault
means the same thing on a temperature and on a CPU load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("spike", "level_shift", "drift", "stuck", "noise_burst")


@dataclass(frozen=True)
class Fault:
    kind: str
    start: int
    end: int  # exclusive
    feature: int


@dataclass(frozen=True)
class Spread:
    """How much a feature moves in the normal period: the unit of every fault's size."""

    level: np.ndarray  # std of the values, per feature
    step: np.ndarray  # std of the first differences, per feature

    @classmethod
    def of(cls, normal: np.ndarray) -> Spread:
        normal = np.asarray(normal, np.float64)
        level = np.maximum(normal.std(axis=0), 1e-9)
        step = np.maximum(np.diff(normal, axis=0).std(axis=0), 1e-9) if len(normal) > 1 else level
        return cls(level, step)


def inject(values: np.ndarray, fault: Fault, spread: Spread, rng: np.random.Generator,
           size: float = 1.0) -> np.ndarray:
    """A copy of `values` (N, F) with one fault in rows [start, end) of one feature.

    spike: one reading moved by 4 sd; level_shift: +-2 sd from `start` to `end`; drift: a ramp to
    +-3 sd; stuck: the value at `start` held; noise_burst: added noise of 3 step-sds (at least 0.5 sd).
    `size` scales every magnitude.
    """
    out = np.array(values, np.float64, copy=True)
    f, s, e = fault.feature, fault.start, fault.end
    sign = rng.choice([-1.0, 1.0])
    sd, step = spread.level[f] * size, spread.step[f] * size
    if fault.kind == "spike":
        out[s, f] += sign * 4 * sd
    elif fault.kind == "level_shift":
        out[s:e, f] += sign * 2 * sd
    elif fault.kind == "drift":
        out[s:e, f] += sign * 3 * sd * np.linspace(0, 1, e - s + 1)[1:]
    elif fault.kind == "stuck":
        out[s:e, f] = out[s, f]
    elif fault.kind == "noise_burst":
        out[s:e, f] += rng.normal(0, max(3 * step, 0.5 * sd), e - s)
    else:
        raise ValueError(f"unknown fault {fault.kind!r} (known: {', '.join(KINDS)})")
    return out.astype(np.float32)


def faulty_rows(fault: Fault) -> np.ndarray:
    """The rows a detector should flag: the spike's one reading, or the whole segment."""
    return np.arange(fault.start, fault.start + 1 if fault.kind == "spike" else fault.end)
