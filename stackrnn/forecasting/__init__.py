"""Time-series forecasting: the M4 competition's metrics and benchmark forecasts (numpy; theta and ets through the
optional statsmodels). The data loaders are stackrnn.data.series."""

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
from stackrnn.forecasting.metrics import (
    POINT_METRICS,
    coverage,
    crps_from_samples,
    mae,
    mase,
    owa,
    quantile_loss,
    rmse,
    score_all,
    smape,
)

__all__ = [
    "BASELINES",
    "POINT_METRICS",
    "available_baselines",
    "coverage",
    "crps_from_samples",
    "ets",
    "fill_gaps",
    "forecast_all",
    "mae",
    "mase",
    "naive",
    "naive2",
    "owa",
    "quantile_loss",
    "rmse",
    "score_all",
    "seasonal_naive",
    "smape",
    "theta",
]
