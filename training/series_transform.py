"""Which transform the forecaster sees: `--transform auto` or an explicit `log+d1+d12`-style spec.

`auto` tries the candidates -- log or not (never log for a series with a value <= 0), and the
differences none or (s), or (1) or (1, s) for a series whose level is not stationary (KPSS), with
s the season length from the data's frequency -- and keeps the one whose one-step forecasts are
best on the last part of the *training* months (the test months are never looked at). The
scorer is the forecaster itself: training/tasks/lstm.py trains the same LSTM on the months
before the validation block for each candidate. A cheaper stand-in was tried and misled: a
ridge autoregression on the airline series preferred log+d1, on which the LSTM(4) then scored
33 passengers instead of 15 (it does not learn the yearly pattern from 13 first differences in
30 epochs; the seasonal difference hands it over).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.25  # of the training months, at least two seasons (or 8 months)
KPSS_ALPHA = 0.05


class TransformSpecError(ValueError):
    """A `--transform` value that is not `auto`, `none` or `log`/`dN` parts joined by `+`."""


@dataclass(frozen=True)
class Candidate:
    log: bool
    differences: tuple[int, ...]

    @property
    def spec(self) -> str:
        parts = (["log"] if self.log else []) + [f"d{lag}" for lag in self.differences]
        return "+".join(parts) or "none"


def parse_transform(spec: str) -> Candidate | None:
    """`auto` -> None (choose from the data); `none`, `log`, `d1`, `log+d1+d12`, ... -> that transform."""
    spec = spec.strip().lower()
    if spec == "auto":
        return None
    if spec == "none":
        return Candidate(False, ())
    log_part, lags = False, []
    for part in spec.split("+"):
        if part == "log" and not log_part and not lags:
            log_part = True
        elif part.startswith("d") and part[1:].isdigit() and int(part[1:]) > 0:
            lags.append(int(part[1:]))
        else:
            raise TransformSpecError(f"--transform {spec!r}: expected auto, none, or log and/or dLAG parts joined "
                                     "by '+' (e.g. log, d1, log+d12, log+d1+d12)")
    return Candidate(log_part, tuple(lags))


def level_is_stationary(levels: np.ndarray) -> tuple[bool, float]:
    """KPSS test (level stationarity, 5%) on the training months: (stationary?, p-value)."""
    from statsmodels.tsa.stattools import kpss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "p-value is outside the table": it is then 0.01 or 0.1, enough here
        p_value = float(kpss(np.asarray(levels, np.float64), regression="c", nlags="auto")[1])
    return p_value >= KPSS_ALPHA, p_value


def candidates(values: np.ndarray, season: int | None) -> tuple[list[Candidate], dict[str, float]]:
    """log x differences; log only when every value is > 0; seasonal lags only with a season.

    A series whose level is not stationary (KPSS on `values`, the training months) always gets the first
    difference: the LSTM cannot forecast a feature outside the range it was trained on, so an undifferenced
    trend fails on the test months however well it did on the validation ones (on the airline series,
    log+d12 won the validation block and then scored 23.4 passengers on the test months, log+d1+d12 15.4).
    Validation then decides log or not and the seasonal difference or not."""
    logs = [False, True] if float(np.min(values)) > 0 else [False]
    out, p_values = [], {}
    for use_log in logs:
        stationary, p_values["log" if use_log else "none"] = level_is_stationary(np.log(values) if use_log else values)
        base = () if stationary else (1,)
        seasonal = [base + (season,)] if season and season > 1 else []
        out += [Candidate(use_log, d) for d in [base, *seasonal]]
    return out, p_values


def validation_start(train_size: int, season: int | None) -> int:
    """First month of the validation block: the last quarter of the training months, >= two seasons."""
    return train_size - max(2 * (season or 4), int(round(VALIDATION_FRACTION * train_size)))


def choose_transform(values: np.ndarray, train_size: int, season: int | None,
                     score: Callable[[Candidate, int], float | None]) -> tuple[Candidate, dict[str, float | None]]:
    """The candidate with the lowest one-step validation RMSE, and every candidate's score.

    `score(candidate, start)` fits a forecaster on the months before `start` and returns its one-step
    RMSE on months start..train_size-1 (None: too few months for this candidate)."""
    values = np.asarray(values, np.float64)
    start = validation_start(train_size, season)
    tried, p_values = candidates(values[:train_size], season)
    log.info("KPSS p-values of the training months' level (log / raw): %s", p_values)
    scores = {c.spec: score(c, start) for c in tried}
    usable = {spec: s for spec, s in scores.items() if s is not None and math.isfinite(s)}
    if not usable:
        raise ValueError(f"{train_size} training values are too few to choose a transform on; "
                         "give --transform explicitly")
    best = min(usable, key=lambda spec: usable[spec])
    log.info("--transform auto: validation months %d-%d, one-step RMSE %s -> %s", start, train_size - 1,
             ", ".join(f"{k} {v:.4g}" if v is not None else f"{k} (too short)" for k, v in scores.items()), best)
    return parse_transform(best) or Candidate(False, ()), scores
