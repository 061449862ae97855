"""Forecast metrics (stackrnn/forecasting/metrics.py) against values worked by hand, and, as the acceptance test of
the metric code, the M4 competition's published Naive2 and seasonal-naive scores on M4 Hourly to 3 decimals."""

import math

import numpy as np
import pytest

from stackrnn.forecasting.baselines import forecast_all
from stackrnn.forecasting.metrics import (
    coverage,
    crps_from_samples,
    mae,
    mase,
    mase_scale,
    owa,
    quantile_loss,
    rmse,
    score_all,
    smape,
)

from .conftest import SHARED

M4 = SHARED / "m4"
needs_m4 = pytest.mark.skipif(not (M4 / "Hourly-train.csv").is_file(), reason=f"no M4 data at {M4}")


def test_smape_by_hand():
    expected = (200 * 10 / 210 + 200 * 20 / 380) / 2
    assert smape([100, 200], [110, 180]) == pytest.approx(expected)
    assert smape([100, np.nan, 200], [110, 0, 180]) == pytest.approx(expected)  # a missing actual is skipped
    assert smape([0, 5], [0, 5]) == 0  # 0 forecast for a 0 actual is exact, not 0/0
    assert smape([1], [-1]) == 200  # the largest error
    assert math.isnan(smape([np.nan], [1]))


def test_mase_by_hand():
    history = [1, 2, 3, 4, 5, 6]
    assert mase_scale(history, 2) == 2  # |3-1|, |4-2|, ... all 2
    assert mase(history, [7, 8], [6, 10], 2) == pytest.approx(1.5 / 2)
    assert mase_scale([1, 4, 2, 8], 1) == pytest.approx((3 + 2 + 6) / 3)
    assert mase_scale([1, 3], 2) == 2  # no pair two steps apart: the one-step naive error
    assert mase_scale([1, np.nan, 3, 6, 5], 2) == pytest.approx((2 + 2) / 2)  # pairs with a NaN left out
    assert mase([2, 2, 2], [3], [2], 1) == math.inf  # a flat history, as M4's code divides


def test_mae_rmse_by_hand():
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1)
    assert rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt(5 / 3))
    assert rmse([1, np.nan], [2, 100]) == 1


def test_score_all_and_owa_by_hand():
    histories = [[1, 2, 3, 4], [10, 10, 20, 20]]
    actuals = [[5, 6], [20, 20]]
    forecasts = [[4, 6], [20, 30]]
    scores = score_all(histories, actuals, forecasts, m=1)
    assert scores["mae"] == pytest.approx((0.5 + 5) / 2)
    assert scores["mase"] == pytest.approx((0.5 / 1 + 5 / (10 / 3)) / 2)
    assert scores["smape"] == pytest.approx((200 / 9 / 2 + 200 * 10 / 50 / 2) / 2)
    assert scores["rmse"] == pytest.approx((math.sqrt(0.5) + math.sqrt(50)) / 2)
    assert owa(scores, scores) == 1
    with_unknown = score_all([*histories, [1, 2]], [*actuals, [np.nan, np.nan]], [*forecasts, [0, 0]], m=1)
    assert with_unknown == scores  # a series with no actual value is left out
    assert owa({"smape": 10, "mase": 3}, {"smape": 20, "mase": 2}) == pytest.approx(0.5 * (0.5 + 1.5))


def test_quantile_loss_by_hand():
    y = [10, 20]
    qf = [[8, 22], [10, 20], [12, 18]]  # quantiles 0.1, 0.5, 0.9
    # q=0.1: 0.1*2 + 0.9*2 = 2;  q=0.5: 0;  q=0.9: 0.1*2 + 0.9*2 = 2;  each times 2 / sum|y| = 30
    assert quantile_loss(y, qf, [0.1, 0.5, 0.9]) == pytest.approx((4 / 30 + 0 + 4 / 30) / 3)
    assert quantile_loss(y, [[11, 19]], [0.5]) == pytest.approx(2 / 30)  # the median: sum |y - f| / sum |y|


def test_crps_from_samples():
    assert crps_from_samples([1.0], [[0.0], [2.0]]) == pytest.approx(0.5)  # E|X-y| = 1, E|X-X'| / 2 = 1/2
    assert crps_from_samples([3.0], [[3.0]] * 4) == 0  # a sure and right forecast
    rng = np.random.default_rng(0)
    samples, y = rng.normal(size=(50, 3)), np.array([0.3, -1.0, np.nan])
    pairs = np.abs(samples[:, None, :2] - samples[None, :, :2]).mean(axis=(0, 1))  # all N^2 pairs, directly
    direct = np.mean(np.abs(samples[:, :2] - y[:2]).mean(axis=0) - 0.5 * pairs)
    assert crps_from_samples(y, samples) == pytest.approx(direct)
    # many samples of N(0, 1) at y = 0: the closed form (sqrt(2) - 1) / sqrt(pi) (Gneiting and Raftery 2007)
    many = rng.normal(size=(20_000, 1))
    assert crps_from_samples([0.0], many) == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi), abs=0.01)


def test_coverage():
    assert coverage([1, 2, 3, np.nan], [0, 2.5, 0, 0], [2, 3, 2, 1]) == pytest.approx(1 / 3)
    assert coverage([1, 2], [1, 2], [1, 2]) == 1  # the bounds are inside


@needs_m4
def test_m4_hourly_published_naive2_and_seasonal_naive():
    """The M4 competition's own figures for M4 Hourly (DATA.md): Naive2 sMAPE 18.383, MASE 2.395; seasonal naive
    13.912, 1.193, OWA 0.627."""
    from stackrnn.data.series import read_series, read_wide_test

    train = read_series(M4 / "Hourly-train.csv", freq="H")
    test = read_wide_test(train, M4 / "Hourly-test.csv")
    scores = {name: score_all(train.values, test, forecast_all(name, train.values, 48, 24), 24)
              for name in ("naive2", "seasonal_naive")}
    assert scores["naive2"]["smape"] == pytest.approx(18.383, abs=5e-4)
    assert scores["naive2"]["mase"] == pytest.approx(2.395, abs=5e-4)
    assert scores["seasonal_naive"]["smape"] == pytest.approx(13.912, abs=5e-4)
    assert scores["seasonal_naive"]["mase"] == pytest.approx(1.193, abs=5e-4)
    # 0.62750 from the unrounded means here, 0.62745 from the rounded published ones: both 0.627 within 1e-3
    assert owa(scores["seasonal_naive"], scores["naive2"]) == pytest.approx(0.627, abs=1e-3)
