"""The M4 benchmarks' seasonal adjustment: a 90% autocorrelation test for seasonality, then a classical
multiplicative decomposition by centred moving averages.

This is the M4 team's R code ("Benchmarks and Evaluation.R" of github.com/Mcompetitions/M4-methods:
SeasonalityTest, then stats::decompose(type = "multiplicative")), which made the published Naive2, Theta, SES,
Holt and Damped figures, step by step:

1. seasonal when the series has at least 3 seasons and |r_m| > 1.645 sqrt((1 + 2 sum_{k=1}^{m-1} r_k^2) / T),
   r_k the lag-k autocorrelation (R's acf: deviations from the mean, divided by their sum of squares). R's acf
   stops at lag 10 log10(T), so a season longer than that (m = 24 needs T >= 252) is never found seasonal;
2. trend: the centred moving average over one season (for even m the 2 x m MA, weights 1/2m at both ends);
3. seasonal index of position i in the season: the mean over the seasons of x_t / trend_t at t = i mod m, the
   indices then scaled to mean 1.

The series' first value is position 0 of the season. (The M4 team's Python port differs in two ways: it centres
the moving average by the parity of the series' length instead of the season's, and it adds r_1 unsquared in
the test. Neither changes M4 Hourly, whose series all have even lengths and clear daily seasons.)
"""

from __future__ import annotations

import math

import numpy as np

#: the one-sided 90% normal quantile of M4's test
_CRITICAL = 1.645


def autocorrelations(x: np.ndarray, max_lag: int) -> np.ndarray:
    """R's acf: r_1 .. r_max_lag of x (T,), each sum_t (x_t - mean)(x_{t-k} - mean) / sum_t (x_t - mean)^2:
    (max_lag,) float64; NaN for a constant series."""
    deviations = x - x.mean()  # (T,)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.array([deviations[k:] @ deviations[:-k] for k in range(1, max_lag + 1)]) / (deviations @ deviations)


def seasonality_test(x: np.ndarray, m: int) -> bool:
    """M4's test: whether x (T,), without missing values, has a season of m steps at the 90% level."""
    n = len(x)
    if m <= 1 or n < 3 * m or m > math.floor(10 * math.log10(n)):  # R's acf has no lag m: its NA reads as False
        return False
    r = autocorrelations(x, m)  # (m,) r_1 .. r_m
    limit = _CRITICAL * math.sqrt((1 + 2 * np.sum(r[:-1] ** 2)) / n)
    return bool(abs(r[-1]) > limit)  # False for NaN (a constant series)


def seasonal_indices(x: np.ndarray, m: int) -> np.ndarray:
    """The multiplicative seasonal index of each position in the season, (m,) with mean 1: stats::decompose's
    `figure`. x (T,) without missing values, T >= 2m."""
    weights = np.ones(m + 1 - m % 2)  # (m,) for odd m, (m + 1,) with halved ends for even m
    if m % 2 == 0:
        weights[[0, -1]] = 0.5
    weights /= m
    trend = np.full(len(x), np.nan)  # (T,) undefined for the first and last m // 2 steps
    trend[m // 2: len(x) - m // 2] = np.convolve(x, weights, mode="valid")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = x / trend  # (T,)
    seasons = -(-len(x) // m)
    padded = np.full(seasons * m, np.nan)
    padded[: len(x)] = ratio
    figure = np.nanmean(padded.reshape(seasons, m), axis=0)  # (m,)
    return figure / figure.mean()


def seasonal_factors(x: np.ndarray, m: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The seasonal factors of x's own steps and of the h steps after it: ((T,), (h,)). All 1 when x is not
    seasonal by seasonality_test: divide x by the first, multiply its adjusted forecast by the second."""
    n = len(x)
    if not seasonality_test(x, m):
        return np.ones(n), np.ones(h)
    figure = seasonal_indices(x, m)
    return figure[np.arange(n) % m], figure[np.arange(n, n + h) % m]
