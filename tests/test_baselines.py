"""Benchmark forecasts (stackrnn/forecasting/baselines.py) and M4's seasonal adjustment (decompose.py): worked
cases, statsmodels' acf and classical decomposition as references where installed, and M4 Hourly's Theta."""

import importlib.util

import numpy as np
import pytest

from stackrnn.errors import InputError
from stackrnn.forecasting import baselines
from stackrnn.forecasting.baselines import (
    BASELINES,
    available_baselines,
    ets,
    fill_gaps,
    forecast_all,
    naive,
    naive2,
    seasonal_naive,
    theta,
)
from stackrnn.forecasting.decompose import autocorrelations, seasonal_indices, seasonality_test
from stackrnn.forecasting.metrics import mase, score_all

from .conftest import SHARED

M4 = SHARED / "m4"
HAS_STATSMODELS = importlib.util.find_spec("statsmodels") is not None
needs_statsmodels = pytest.mark.skipif(not HAS_STATSMODELS, reason="statsmodels is not installed (stackrnn[forecast])")

DAY = np.array([1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 5, 5, 6, 7, 8, 7, 5, 3, 2, 1], dtype=float)  # (24,) a day


def seasonal_series(days: int, trend: float = 0.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """An hourly series, DAY's shape times a level that grows by `trend` a step, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    steps = np.arange(24 * days)
    return (100 + trend * steps) * np.tile(DAY, days) * (1 + noise * rng.standard_normal(len(steps)))


def test_fill_gaps():
    assert np.array_equal(fill_gaps([np.nan, 1, np.nan, 3, np.nan, np.nan]), [1, 2, 3, 3, 3])
    assert np.array_equal(fill_gaps([4.0, 5.0]), [4, 5])
    with pytest.raises(InputError, match="no observed value"):
        fill_gaps([np.nan, np.nan])


def test_naive_and_seasonal_naive():
    assert np.array_equal(naive([1, 2, np.nan], 3), [2, 2, 2])  # the last observed value
    assert np.array_equal(seasonal_naive([1, 2, 3, 4, 5, 6], 5, 3), [4, 5, 6, 4, 5])
    assert np.array_equal(seasonal_naive([1, 2], 2, 3), [2, 2])  # shorter than a season: naive
    assert np.array_equal(seasonal_naive([1, 2, 3], 2, 1), [3, 3])


def test_naive2_continues_an_exact_multiplicative_season():
    x = seasonal_series(days=12)  # a flat level: the decomposition recovers DAY exactly
    assert seasonality_test(x, 24)
    assert np.allclose(seasonal_indices(x, 24), DAY / DAY.mean())
    assert np.allclose(naive2(x, 30, 24), np.resize(DAY, 30) * 100)  # x's length is whole days: next is hour 0


def test_naive2_is_naive_without_a_season():
    noise = 10 + np.random.default_rng(0).standard_normal(500)  # a 10% test: 1 seed in 10 finds a season in noise
    assert not seasonality_test(noise, 24)
    assert np.array_equal(naive2(noise, 5, 24), naive(noise, 5))
    # R's acf, which M4's test calls, stops at lag 10 log10(T): 10 days of an hourly season (T = 240) have no lag 24
    ten_days = seasonal_series(days=10)
    assert not seasonality_test(ten_days, 24) and np.array_equal(naive2(ten_days, 5, 24), naive(ten_days, 5))
    assert not seasonality_test(seasonal_series(days=2), 24)  # under 3 seasons
    assert not seasonality_test(np.full(300, 5.0), 24)  # constant: no autocorrelation at all
    assert np.array_equal(naive2([1, 2, 3], 2, 1), [3, 3])


@needs_statsmodels
def test_autocorrelations_and_indices_match_statsmodels():
    from statsmodels.tsa.seasonal import seasonal_decompose
    from statsmodels.tsa.stattools import acf

    x = seasonal_series(days=11, trend=0.3, noise=0.05) + 1.0
    assert np.allclose(autocorrelations(x, 30), acf(x, nlags=30, fft=False)[1:])
    for m in (24, 7):  # even: the 2 x m moving average; odd: the plain one
        reference = seasonal_decompose(x, model="multiplicative", period=m).seasonal[:m]
        assert np.allclose(seasonal_indices(x, m), reference)


def test_every_baseline_takes_missing_values():
    x = seasonal_series(days=12, trend=0.1, noise=0.05)
    x[[0, 100, 101, 287]] = np.nan
    for name in available_baselines():
        forecast = BASELINES[name](x, 30, 24)
        assert forecast.shape == (30,) and np.isfinite(forecast).all(), name


def test_available_baselines(monkeypatch):
    assert available_baselines()[:3] == ["naive", "seasonal_naive", "naive2"]
    assert ("theta" in available_baselines()) == HAS_STATSMODELS
    monkeypatch.setattr(baselines.importlib.util, "find_spec", lambda name: None)
    assert available_baselines() == ["naive", "seasonal_naive", "naive2"]
    with pytest.raises(InputError, match="unknown baseline 'arima'"):
        forecast_all("arima", [[1.0]], 2, 1)


@needs_statsmodels
def test_theta_drifts_by_half_the_trend():
    x = np.arange(1.0, 101.0)  # a line: theta line 2 is x itself, whose SES forecast stays at 100; line 0 goes on
    assert np.allclose(theta(x, 4, 1), 100 + 0.5 * np.arange(1, 5), atol=0.01)
    assert np.array_equal(theta(-np.arange(1.0, 30.0), 3, 1), [0, 0, 0])  # M4 sets negative forecasts to 0


@needs_statsmodels
def test_ets_beats_naive_on_a_trending_season():
    x = seasonal_series(days=14, trend=0.2, noise=0.02, seed=3)
    history, actual = x[:-48], x[-48:]
    assert mase(history, actual, ets(history, 48, 24), 24) < mase(history, actual, naive(history, 48), 24) / 2


@needs_statsmodels
@pytest.mark.skipif(not (M4 / "Hourly-train.csv").is_file(), reason=f"no M4 data at {M4}")
def test_m4_hourly_theta_published():
    """M4's Theta on M4 Hourly: published sMAPE 18.138, MASE 2.455 (OWA 1.006), reproduced to 3 decimals with
    statsmodels 0.15 / scipy 1.17. statsmodels fits SES by least squares, R's forecast package (M4's) by likelihood,
    each with its own optimiser: another version may move the third decimal. About 7 s: 414 SES fits."""
    from stackrnn.data.series import read_series, read_wide_test

    train = read_series(M4 / "Hourly-train.csv", freq="H")
    test = read_wide_test(train, M4 / "Hourly-test.csv")
    scores = score_all(train.values, test, forecast_all("theta", train.values, 48, 24), 24)
    assert scores["smape"] == pytest.approx(18.138, abs=5e-4)
    assert scores["mase"] == pytest.approx(2.455, abs=5e-4)
