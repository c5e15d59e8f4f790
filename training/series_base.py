"""The forecaster's base, fitted on the host: the airline model's two MA coefficients, or seasonal naive.

The device runs the recursion of `edge.models.series_forecast.Base` from the two numbers in the manifest;
statsmodels (a training dependency, never the edge's) estimates them here on the training months only.
Seasonal naive y[t-s] is the fallback base when the fit fails or when it forecasts the held-out
months better than the fitted model (then the device's forecast cannot lose to it there).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace

import numpy as np

from edge.models.series_forecast import Base, base_errors
from training.quality.evaluation import rmse

log = logging.getLogger(__name__)


def levels_of(values: np.ndarray, use_log: bool) -> np.ndarray:
    values = np.asarray(values, np.float64)
    return np.log(values) if use_log else values


def fit_airline(values: np.ndarray, season: int, use_log: bool) -> Base | None:
    """SARIMA(0,1,1)(0,1,1)s (ARIMA(0,1,1) without a season) fitted on `values`; None when the fit fails."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    levels = levels_of(values, use_log)
    seasonal = (0, 1, 1, season) if season > 1 else (0, 0, 0, 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on short series; validation says how it did
            fitted = SARIMAX(levels, order=(0, 1, 1), seasonal_order=seasonal).fit(disp=False)
    except Exception as exc:  # noqa: BLE001 - any failure of the fit means the fallback base
        log.warning("the airline model could not be fitted (%s: %s)", type(exc).__name__, exc)
        return None
    params = dict(zip(fitted.param_names, np.asarray(fitted.params, np.float64)))
    theta, seasonal_theta = float(params.get("ma.L1", 0.0)), float(params.get(f"ma.S.L{season}", 0.0))
    if not np.isfinite([theta, seasonal_theta]).all():
        return None
    clip = lambda v: float(np.clip(v, -0.99, 0.99))  # noqa: E731 - keep the recursion invertible
    return Base("airline", max(season, 1), use_log, clip(theta), clip(seasonal_theta))


def seasonal_naive(season: int, use_log: bool) -> Base:
    return Base("seasonal_naive", max(season, 1), use_log)


def base_rmse(base: Base, values: np.ndarray, start: int, end: int) -> float:
    """One-step RMSE (value units) of the base on months start..end-1, run from the first month."""
    forecasts, _ = base_errors(base, levels_of(values[:end], base.log))
    predicted = np.exp(forecasts[start:end]) if base.log else forecasts[start:end]
    return rmse(predicted, values[start:end])


def refit(base: Base, values: np.ndarray) -> Base:
    """The same kind of base with its coefficients estimated on `values` (the whole training span)."""
    if base.kind != "airline":
        return base
    fitted = fit_airline(values, base.season, base.log)
    return fitted if fitted is not None else replace(base, kind="seasonal_naive", theta=0.0, seasonal_theta=0.0)
