"""The M4 competition's benchmark forecasts, printed beside every model's scores.

Each takes one series' history (T,) and returns the h steps after it, (h,) float64; m is the season length
(24 for hourly data, 1 for none):

    naive           the last value, repeated
    seasonal_naive  the last season, repeated
    naive2          naive on the seasonally adjusted series, re-seasonalised (M4's reference for OWA)
    theta           M4's classic Theta method on the seasonally adjusted series        (needs statsmodels)
    ets             damped-trend Holt-Winters exponential smoothing                    (needs statsmodels)

BASELINES maps each name to a function (history, h, m) -> (h,); available_baselines() lists those that run here
(statsmodels is the optional extra `stackrnn[forecast]`).

Missing values: the histories may hold NaN. Every baseline first drops the NaNs before the first observed value,
fills the ones inside by linear interpolation and carries the last observed value over those at the end (so
naive repeats the last observed value). A history with no observed value is an InputError.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputError
from .decompose import seasonal_factors

OPTIONAL = {"theta": "statsmodels", "ets": "statsmodels"}


def fill_gaps(history) -> np.ndarray:
    """The history from its first observed value on, with NaNs inside filled by linear interpolation and those at
    the end by the last observed value: (T',) float64, no NaN."""
    x = np.asarray(history, dtype=np.float64)
    known = np.flatnonzero(~np.isnan(x))
    if not known.size:
        raise InputError("a series' history has no observed value (all missing): drop it, e.g. with "
                         "SeriesSet.drop_short(1)")
    x = x[known[0]:]
    known -= known[0]
    if known.size == len(x):
        return x
    return np.interp(np.arange(len(x)), known, x[known])  # flat past the last known value


def naive(history, h: int) -> np.ndarray:
    """The last observed value, h times: (h,)."""
    return np.full(h, fill_gaps(history)[-1])


def seasonal_naive(history, h: int, m: int) -> np.ndarray:
    """The last m values repeated over the h steps (M4's seasonal naive): (h,). naive when m <= 1 or the history
    is shorter than one season."""
    x = fill_gaps(history)
    if m <= 1 or len(x) < m:
        return naive(x, h)
    return np.resize(x[-m:], h)  # np.resize repeats the season as often as needed


def naive2(history, h: int, m: int) -> np.ndarray:
    """M4's Naive2: the last value of the seasonally adjusted history (decompose.py: M4's 90% test and classical
    multiplicative decomposition), times the seasonal factors of the next h steps: (h,). Equals naive for a
    series found not seasonal."""
    x = fill_gaps(history)
    inside, ahead = seasonal_factors(x, m, h)  # (T,), (h,)
    return x[-1] / inside[-1] * ahead


def theta(history, h: int, m: int) -> np.ndarray:
    """M4's Theta benchmark (Theta.classic on the seasonally adjusted series, as naive2 adjusts it): the mean of the
    least-squares line through the series (theta line 0), extended, and simple exponential smoothing of the theta
    line 2 (2 x - line), its smoothing constant and first level fitted by least squares (statsmodels); forecasts
    below 0 set to 0, then re-seasonalised: (h,)."""
    smoothing = _statsmodels().tsa.holtwinters.SimpleExpSmoothing
    x = fill_gaps(history)
    if len(x) < 2:
        return naive(x, h)  # no line through one point
    inside, ahead = seasonal_factors(x, m, h)
    adjusted = x / inside  # (T,)
    steps = np.arange(1, len(x) + h + 1, dtype=np.float64)  # (T + h,) M4's xt: 1 .. T, then the horizon
    slope, intercept = np.polyfit(steps[: len(x)], adjusted, 1)
    line = intercept + slope * steps  # (T + h,) theta line 0
    with warnings.catch_warnings():  # statsmodels warns when the optimiser stops at a bound: a fit, not an error
        warnings.simplefilter("ignore")
        # use_brute=False: the optimiser starts from statsmodels' default parameters, not the best point of a coarse
        # grid; that reproduces M4's published Hourly Theta (18.138 / 2.455; the grid start gives 18.136 / 2.454)
        ses = smoothing(2 * adjusted - line[: len(x)], initialization_method="estimated").fit(use_brute=False)
    forecast = 0.5 * np.asarray(ses.forecast(h)) + 0.5 * line[len(x):]
    return np.maximum(forecast, 0.0) * ahead


def ets(history, h: int, m: int) -> np.ndarray:
    """Holt-Winters exponential smoothing with a damped additive trend (statsmodels' ExponentialSmoothing, fitted by
    least squares): a multiplicative season of m steps for a positive series with two seasons or more, an
    additive one for other series that long, none for shorter ones: (h,)."""
    smoothing = _statsmodels().tsa.holtwinters.ExponentialSmoothing
    x = fill_gaps(history)
    if len(x) < 4:
        return naive(x, h)  # too few values to fit a level and a trend
    seasonal = None if m <= 1 or len(x) < 2 * m else "mul" if x.min() > 0 else "add"
    with warnings.catch_warnings():  # convergence warnings at the bounds of the parameters: a fit, not an error
        warnings.simplefilter("ignore")
        model = smoothing(x, trend="add", damped_trend=True, seasonal=seasonal,
                          seasonal_periods=m if seasonal else None, initialization_method="estimated")
        return np.asarray(model.fit().forecast(h), dtype=np.float64)


BASELINES: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "naive": lambda history, h, m: naive(history, h),
    "seasonal_naive": seasonal_naive,
    "naive2": naive2,
    "theta": theta,
    "ets": ets,
}


def available_baselines() -> list[str]:
    """The baselines that run here: all but those whose optional library (OPTIONAL) is not installed."""
    return [name for name in BASELINES
            if name not in OPTIONAL or importlib.util.find_spec(OPTIONAL[name]) is not None]


def forecast_all(name: str, histories: Sequence, h: int, m: int) -> list[np.ndarray]:
    """Baseline `name`'s forecasts for many series: (h,) for each history."""
    if name not in BASELINES:
        raise InputError(f"unknown baseline {name!r}: use one of {', '.join(BASELINES)}")
    return [BASELINES[name](history, h, m) for history in histories]


def _statsmodels():
    try:
        import statsmodels.tsa.holtwinters  # noqa: F401  (statsmodels.tsa is not imported by statsmodels itself)
        import statsmodels
    except ImportError:
        raise InputError("the theta and ets baselines need statsmodels: pip install 'stackrnn[forecast]' (or "
                         "statsmodels), or leave them out (available_baselines() lists those that run)") from None
    return statsmodels
