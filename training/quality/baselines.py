"""Baseline one-step forecasts beside the LSTM, on the same test months.

- persistence: y[t-1]
- seasonal naive (textbook): y[t-s], s the season length (12 for monthly data)
- naive growth: y[t-1] * y[t-s] / y[t-s-1] -- last month's value grown as it grew a season ago
  (the seasonal random walk of the log series; positive series only)
- seasonal ARIMA(0,1,1)(0,1,1)s (the "airline model") on log values (raw values when a value is
  <= 0), fitted by statsmodels on the training months only, then run one step ahead through
  the test months with those parameters fixed.
Host side only: statsmodels is a training dependency, never the edge's.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from training.quality.evaluation import rmse

log = logging.getLogger(__name__)

NAMES = {"persistence": "persistence y[t-1]", "seasonal_naive": "seasonal naive y[t-{s}]",
         "naive_growth": "naive growth y[t-1]*y[t-{s}]/y[t-{s1}]", "sarima": "SARIMA(0,1,1)(0,1,1){s}{log}"}


def sarima_forecasts(values: np.ndarray, train_size: int, season: int, targets: np.ndarray) -> np.ndarray:
    """One-step forecasts of the target months from an airline model fitted on the first train_size values."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    use_log = bool(np.min(values) > 0)
    series = np.log(values) if use_log else np.asarray(values, np.float64)
    seasonal = (0, 1, 1, season) if season > 1 else (0, 0, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short series; the RMSE says how it did
        fitted = SARIMAX(series[:train_size], order=(0, 1, 1), seasonal_order=seasonal).fit(disp=False)
        predicted = fitted.apply(series).get_prediction(start=int(targets[0]), end=int(targets[-1])).predicted_mean
    predicted = np.asarray(predicted)[targets - targets[0]]
    return np.exp(predicted) if use_log else predicted


def baseline_forecasts(values: np.ndarray, train_size: int, season: int | None,
                       targets: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's one-step forecast of every target month (months t >= s + 1)."""
    values = np.asarray(values, np.float64)
    out = {"persistence": values[targets - 1]}
    if season and season > 1:
        out["seasonal_naive"] = values[targets - season]
        if np.min(values) > 0:
            out["naive_growth"] = values[targets - 1] * values[targets - season] / values[targets - season - 1]
    try:
        out["sarima"] = sarima_forecasts(values, train_size, season or 1, targets)
    except Exception as exc:  # noqa: BLE001 - a baseline that cannot be fitted is reported as missing
        log.warning("SARIMA baseline failed (%s: %s); reported as missing", type(exc).__name__, exc)
    return out


def baseline_metrics(values: np.ndarray, train_size: int, season: int | None,
                     targets: np.ndarray) -> dict[str, object]:
    """Test RMSE of each baseline on `targets` and a readable name for each."""
    values = np.asarray(values, np.float64)
    scores = {name: rmse(f, values[targets]) for name, f in baseline_forecasts(values, train_size, season,
                                                                                   targets).items()}
    s = season or 1
    names = {k: NAMES[k].format(s=s, s1=s + 1, log=" on log" if np.min(values) > 0 else "") for k in scores}
    return {"baselines_rmse": scores, "baseline_names": names, "season": season}


def winner(baselines_rmse: dict[str, float], model_rmse: float, model: str = "lstm") -> str:
    """The forecaster with the lowest test RMSE, the model included."""
    return min({**baselines_rmse, model: model_rmse}.items(), key=lambda kv: kv[1])[0]
