"""Forecast accuracy, as the M4 competition defines it, and for probabilistic forecasts.

Dimension key: H horizon (steps forecast), T history (in-sample) length, Q quantiles, N sample paths.

Point forecasts of one series (y the actual values, f the forecast, both (H,)):

    smape = mean_t 200 |y_t - f_t| / (|y_t| + |f_t|)                      (percent; M4's sMAPE)
    mase  = mean_t |y_t - f_t|  /  mean_t |x_t - x_{t-m}|                  (x the history; M4's MASE)
    mae   = mean_t |y_t - f_t|,     rmse = sqrt(mean_t (y_t - f_t)^2)

A dataset's score is the mean over its series of each (score_all), and its OWA the mean of its sMAPE and MASE
relative to Naive2's on the same series (owa): M4 divides the dataset means, not each series' scores.

Missing actual values (NaN) are left out of every mean; a series with no actual value scores NaN, and score_all
leaves it out of the dataset's means. Where M4's
own code would divide by zero, so do these: a history with no change over m steps has MASE inf (nan when the
forecast is exact too). One case M4's code leaves undefined is defined here: sMAPE counts a step where both
the actual and the forecast are 0 as exact (0), not 0/0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POINT_METRICS = ("smape", "mase", "mae", "rmse")


def _observed(y, *forecasts) -> tuple[np.ndarray, ...]:
    """y and the forecasts at the steps where y is known: (H',) float64 each."""
    y = np.asarray(y, dtype=np.float64)
    keep = ~np.isnan(y)
    return (y[keep], *(np.asarray(f, dtype=np.float64)[..., keep] for f in forecasts))


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


# ------------------------------------------------------------------------------------------------ point
def smape(y, f) -> float:
    """M4's symmetric MAPE of one series, in percent (0 to 200): mean over the steps of
    200 |y - f| / (|y| + |f|). y, f: (H,)."""
    y, f = _observed(y, f)
    denominator = np.abs(y) + np.abs(f)
    # both 0: an exact forecast of a zero, 0 rather than 0/0
    ratio = np.divide(np.abs(y - f), denominator, out=np.zeros_like(y), where=denominator > 0)
    return _mean(200.0 * ratio)


def mase_scale(insample, m: int) -> float:
    """The in-sample mean absolute error of the seasonal naive forecast, mean |x_t - x_{t-m}| over the pairs where
    both are known (M4's na.rm): MASE's denominator. m = 1 (the naive forecast) when the history has no two
    values m steps apart; nan when it has no two values at all. insample: (T,)."""
    x = np.asarray(insample, dtype=np.float64)
    if len(x) <= m:
        m = 1  # too short for a seasonal pair: scale by the one-step naive error instead
    if len(x) <= m:
        return float("nan")
    change = np.abs(x[m:] - x[:-m])  # (T - m,)
    return _mean(change[~np.isnan(change)])


def mase(insample, y, f, m: int) -> float:
    """M4's mean absolute scaled error of one series: mean |y - f| over mase_scale(insample, m). insample: (T,)
    the history the forecast was made from; y, f: (H,); m the season length (24 for hourly, 1 for none)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant history: inf, as M4's code gives
        return float(np.float64(mae(y, f)) / np.float64(mase_scale(insample, m)))


def mae(y, f) -> float:
    """Mean absolute error of one series. y, f: (H,)."""
    y, f = _observed(y, f)
    return _mean(np.abs(y - f))


def rmse(y, f) -> float:
    """Root mean squared error of one series. y, f: (H,)."""
    y, f = _observed(y, f)
    return float(np.sqrt(_mean((y - f) ** 2)))


def score_all(insamples: Sequence, actuals: Sequence, forecasts: Sequence, m: int) -> dict[str, float]:
    """The mean over series of each point metric: {"smape", "mase", "mae", "rmse"}, over the series with at least
    one actual value (NaN when none has).

    Args:
        insamples: each series' history, (T_i,).
        actuals, forecasts: each series' actual and forecast values over the horizon, (H_i,) each.
        m: the season length for MASE's scale.
    """
    if not len(insamples) == len(actuals) == len(forecasts):
        raise ValueError(f"{len(insamples)} histories, {len(actuals)} actuals and {len(forecasts)} forecasts: "
                         "give one of each per series")
    per_series = np.array([[smape(y, f), mase(x, y, f, m), mae(y, f), rmse(y, f)]
                           for x, y, f in zip(insamples, actuals, forecasts)
                           if not np.isnan(np.asarray(y, dtype=np.float64)).all()]).reshape(-1, len(POINT_METRICS))
    return {name: _mean(per_series[:, j]) for j, name in enumerate(POINT_METRICS)}


def owa(scores: dict[str, float], naive2_scores: dict[str, float]) -> float:
    """M4's overall weighted average: 0.5 (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2), of dataset means
    (score_all's) on the same series. Naive2 itself scores 1; lower is better."""
    return 0.5 * (scores["smape"] / naive2_scores["smape"] + scores["mase"] / naive2_scores["mase"])


# ------------------------------------------------------------------------------------------------ probabilistic
def quantile_loss(y, qf, quantiles: Sequence[float]) -> float:
    """The weighted quantile loss of one series, as GluonTS's mean_wQuantileLoss (over one series): for each
    quantile q, 2 sum_t pinball_q(y_t, qf_qt) / sum_t |y_t|, then the mean over the quantiles, where
    pinball_q(y, f) = q (y - f) if y >= f else (1 - q) (f - y). At q = 0.5 it is the absolute error over the sum
    of |y| (normalised deviation). y: (H,); qf: (Q, H); quantiles: (Q,) in (0, 1)."""
    y, qf = _observed(y, qf)
    q = np.asarray(quantiles, dtype=np.float64)[:, None]  # (Q, 1)
    if qf.shape[0] != q.shape[0]:
        raise ValueError(f"{qf.shape[0]} quantile forecasts for {q.shape[0]} quantiles")
    error = y - qf  # (Q, H')
    pinball = np.maximum(q * error, (q - 1) * error)  # (Q, H')
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(2 * pinball.sum(axis=1) / np.abs(y).sum())) if y.size else float("nan")


def crps_from_samples(y, samples) -> float:
    """The continuous ranked probability score of one series, estimated from sample paths, mean over the steps:
    CRPS(F, y) ~ mean_i |X_i - y| - 1/2 mean_{i,j} |X_i - X_j| (the energy form with all N^2 pairs, which is the
    exact CRPS of the samples' empirical distribution). Same units as y; lower is better. y: (H,); samples:
    (N, H)."""
    y, samples = _observed(y, samples)
    if not y.size:
        return float("nan")
    n = samples.shape[0]
    spread = np.abs(samples - y).mean(axis=0)  # (H',)
    # sum_{i,j} |X_i - X_j| over sorted X is 2 sum_i (2i - N + 1) X_(i): O(N log N) instead of N^2 pairs
    ranks = 2 * np.arange(n) - n + 1  # (N,)
    pairs = 2 * (ranks[:, None] * np.sort(samples, axis=0)).sum(axis=0) / n**2  # (H',)
    return float(np.mean(spread - 0.5 * pairs))


def coverage(y, lo, hi) -> float:
    """The fraction of the known actual values inside [lo, hi] (an interval forecast's coverage: 0.8 is right for
    an 80% interval). y, lo, hi: (H,)."""
    y, lo, hi = _observed(y, lo, hi)
    return _mean(((lo <= y) & (y <= hi)).astype(np.float64))
