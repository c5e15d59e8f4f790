"""Which levels and base the forecaster uses: `--transform auto|log|none` (the residual recipe, the default)
or an explicit `log+d1+d12`-style spec (the transform recipe of training/tasks/lstm_lecture.py).

`auto` compares log and raw levels (log only when every value is > 0) by the one-step RMSE, on the last
quarter of the *training* months (>= two seasons; the test months are never looked at), of the airline
model fitted before that block and of seasonal naive. Rules, each written down because the old `auto`
broke them: a near-tie (within TIE) goes to the simpler transform, none -- a coin flip on 24 held-out
months is not evidence (it picked differencing on 159.4 vs 161.0 on a road-casualty series and lost);
the fitted base must beat seasonal naive on those months, else seasonal naive is the base; and a short
series is never refused: with fewer than MIN_FIT_SEASONS seasons before the block, validation cannot
decide and the stated default (log when positive, the textbook airline model) is taken, with the reason.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.models.series_forecast import Base
from training.series_base import base_rmse, fit_airline, refit, seasonal_naive

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.25  # of the training months, at least two seasons (or 8 months)
TIE = 0.03  # held-out RMSEs this close (relative) are a tie: the simpler transform wins
MIN_FIT_SEASONS = 3  # seasons before the held-out block for validation to choose (else the stated default)


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


def validation_start(train_size: int, season: int | None) -> int:
    """First month of the held-out block: the last quarter of the training months, >= two seasons."""
    return train_size - max(2 * (season or 4), int(round(VALIDATION_FRACTION * train_size)))


@dataclass(frozen=True)
class BaseChoice:
    """The base the device runs (fitted on every training month) and the record of why, for the manifest."""

    base: Base
    record: dict[str, Any]


def short_reason(train_size: int, start: int, season: int) -> str | None:
    """Why validation cannot decide on this series (None: it can)."""
    need = MIN_FIT_SEASONS * season + 1
    if start < need:
        return (f"{train_size} training values leave {start} before the held-out block; choosing on validation "
                f"needs >= {need} ({MIN_FIT_SEASONS} seasons of {season} and one)")
    return None


def score_options(values: np.ndarray, train_size: int, start: int, season: int,
                  logs: list[bool]) -> dict[str, dict[str, float | None]]:
    """Held-out one-step RMSE of the airline model (fitted before `start`) and seasonal naive, per transform."""
    scores: dict[str, dict[str, float | None]] = {}
    for use_log in logs:
        fitted = fit_airline(values[:start], season, use_log)
        scores["log" if use_log else "none"] = {
            "airline": base_rmse(fitted, values, start, train_size) if fitted else None,
            "seasonal_naive": base_rmse(seasonal_naive(season, use_log), values, start, train_size)}
    return scores


def pick(scores: dict[str, dict[str, float | None]]) -> tuple[str, str]:
    """(transform, base kind): the lowest held-out RMSE; a transform within TIE of the best loses to the
    simpler one ("none"), and the airline base must beat seasonal naive on the held-out months."""
    best = {spec: min(v for v in s.values() if v is not None and math.isfinite(v)) for spec, s in scores.items()}
    spec = min(best, key=best.__getitem__)
    if spec != "none" and "none" in best and best["none"] <= best[spec] * (1 + TIE):
        spec = "none"
    airline, naive = scores[spec]["airline"], scores[spec]["seasonal_naive"]
    kind = "airline" if airline is not None and math.isfinite(airline) and airline <= naive else "seasonal_naive"  # type: ignore[operator]
    return spec, kind


def choose_base(values: np.ndarray, train_size: int, season: int | None, spec: str = "auto") -> BaseChoice:
    """The transform (log or none) and the base for the residual forecaster, from the training months only.

    `spec`: auto, log or none. Short series are never refused: validation decides only when enough months
    lie before the held-out block; otherwise the stated default (log when every value is > 0, as the
    textbook airline model) is taken and the reason logged at WARNING and kept in the manifest."""
    values = np.asarray(values, np.float64)
    season = season or 1
    positive = bool(np.min(values) > 0)
    if spec not in ("auto", "log", "none"):
        raise TransformSpecError(f"--transform {spec!r}: the residual recipe takes auto, log or none (the base "
                                 "differences the series itself); dLAG specs select the transform recipe")
    if spec == "log" and not positive:
        raise TransformSpecError(f"--transform log needs values > 0 (minimum {np.min(values):g}); use auto or none")
    start = validation_start(train_size, season)
    logs = [spec == "log"] if spec != "auto" else ([True, False] if positive else [False])
    record: dict[str, Any] = {"requested": spec, "season": season, "held_out_months": f"{start}-{train_size - 1}"}
    reason = short_reason(train_size, start, season) if len(logs) > 1 else None
    scores = score_options(values, train_size, start, season, logs) if reason is None else {}
    if reason is None and any(v is not None for s in scores.values() for v in s.values()):
        chosen, kind = pick(scores)
        record.update(validation_rmse=scores, rule=f"lowest held-out RMSE; within {TIE:.0%}: none (simpler); "
                      "airline base only if it beats seasonal naive there")
    else:
        chosen, kind = ("log" if logs[0] else "none"), "airline"
        reason = reason or "the transform was named"
        record["default_because"] = reason
        if spec == "auto":
            log.warning("--transform auto: %s -> the default: %s (%s), airline base", reason, chosen,
                        "every value > 0" if positive else "a value <= 0 rules out log")
    base = refit(Base(kind, season, chosen == "log"), values[:train_size])
    record.update(transform=chosen, base=base.kind)
    log.info("forecaster base: %s on %s levels (%s)", base.kind, chosen, record)
    return BaseChoice(base, record)
