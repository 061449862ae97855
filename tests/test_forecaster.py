"""The Forecaster (models/forecaster.py) by itself: every head trains (finite loss, gradients everywhere),
forecasts monotone quantiles of the right shapes, gives a series the same forecast alone and in a batch, masks
missing values instead of spreading NaN, and the quantile head starts as the seasonal naive forecast."""

import math

import numpy as np
import pytest
import torch

from stackrnn.forecasting.baselines import seasonal_naive
from stackrnn.models.forecaster import DISTRIBUTIONS, HEADS, Forecaster, ForecasterConfig
from stackrnn.models.stack_config import StackConfig

# B series, C context, H horizon, F time features, a season of m steps and lags 1 and m: L = C + m past values
B, C, H, F, M = 4, 8, 6, 2, 4
LEVELS = [0.025, 0.1, 0.5, 0.9, 0.975]


def _model(head: str, *, baseline: str = "none", scaling: str = "mean_abs", seed: int = 0) -> Forecaster:
    torch.manual_seed(seed)
    cfg = ForecasterConfig(stack=StackConfig(hidden_size=8, num_layers=2), head=head, quantiles=list(LEVELS),
                           embedding_size=3, scaling=scaling, mlp_size=8, baseline=baseline)
    return Forecaster.from_config(cfg, num_series=B, context=C, horizon=H, lags=(1, M), time_features=F,
                                  season=M).eval()


def _inputs(seed: int = 0, past_steps: int = C + M):
    """Counts (whole and positive, so every head takes them) around a level of 20 with a season of M."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.arange(past_steps + H, dtype=torch.float32)
    level = 20 + 5 * torch.sin(2 * math.pi * steps / M) + torch.randint(0, 6, (B, past_steps + H), generator=g)
    values = level.round()  # (B, L + H)
    time = torch.rand(B, C + M + H, F, generator=g)  # (B, L + H, F): the features of the last L past steps and H
    return values[:, :past_steps], time, torch.arange(B), values[:, past_steps:]


@pytest.mark.parametrize("head", HEADS)
def test_every_head_s_loss_is_finite_and_reaches_every_parameter(head):
    model = _model(head).train()
    past, time, series, future = _inputs()
    loss = model.loss(past, time, series, future)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) for p in model.rnn.parameters()) > 0  # the stack learns from it


@pytest.mark.parametrize("head, scaling", [(h, s) for h in HEADS for s in ("mean_abs", "standard")
                                           if h != "negative_binomial" or s == "mean_abs"])  # it counts from 0
def test_quantiles_are_monotone_and_the_median_is_the_point_forecast(head, scaling):
    model = _model(head, scaling=scaling, baseline="seasonal" if head == "quantile" else "none", seed=3)
    past, time, series, _ = _inputs(seed=1)
    out = model.forecast(past, time, series, samples=64, seeds=torch.arange(B))
    q = out["quantiles"]  # (B, H, Q)
    assert torch.isfinite(q).all() and (q.diff(dim=-1) >= 0).all()
    torch.testing.assert_close(out["median"], q[..., LEVELS.index(0.5)])  # the point forecast is the 0.5 quantile


@pytest.mark.parametrize("head", [h for h in HEADS if h != "negative_binomial"])  # it draws from the global stream
def test_a_series_forecast_is_the_same_alone_and_in_a_batch(head):
    model = _model(head, seed=5)
    past, time, series, _ = _inputs(seed=2)
    seeds = torch.tensor([11, 12, 13, 14])
    together = model.forecast(past, time, series, samples=32, seeds=seeds)
    for i in range(B):
        alone = model.forecast(past[i:i + 1], time[i:i + 1], series[i:i + 1], samples=32, seeds=seeds[i:i + 1])
        for key in ("median", "quantiles", "mean"):
            torch.testing.assert_close(alone[key][0], together[key][i], rtol=1e-5, atol=1e-5, msg=f"{key} of {i}")
    # and the same seed gives the same paths again, another seed other paths
    again = model.forecast(past, time, series, samples=32, seeds=seeds)
    assert torch.equal(again["quantiles"], together["quantiles"])
    if head in DISTRIBUTIONS:
        other = model.forecast(past, time, series, samples=32, seeds=seeds + 100)
        assert not torch.equal(other["paths"], together["paths"])


@pytest.mark.parametrize("head", HEADS)
def test_forecast_shapes(head):
    model = _model(head)
    past, time, series, _ = _inputs()
    N, Q = 7, len(LEVELS)
    for h in (H, 2):
        out = model.forecast(past, time[:, :C + M + h], series, h, samples=N)
        assert out["quantiles"].shape == (B, h, Q) and out["median"].shape == out["mean"].shape == (B, h)
        assert ("paths" in out) == (head in DISTRIBUTIONS)
        if head in DISTRIBUTIONS:
            assert out["paths"].shape == (B, N, h)
    assert model.forward(past, time, series).shape == (B, H)  # the deterministic point forecast
    # a longer past than the model reads: only its last L values count
    longer = torch.cat([torch.full((B, 5), 1e6), past], 1)
    torch.testing.assert_close(model.forward(longer, time, series), model.forward(past, time, series))


def test_the_quantile_head_forecasts_at_most_its_horizon():
    model = _model("quantile")
    past, time, series, _ = _inputs()
    with pytest.raises(ValueError, match="horizon"):
        model.forecast(past, torch.rand(B, C + M + H + 1, F), series, H + 1)


@pytest.mark.parametrize("head", HEADS)
def test_missing_values_are_masked_not_propagated(head):
    model = _model(head, baseline="seasonal" if head == "quantile" else "none", seed=1).train()
    past, time, series, future = _inputs(seed=3)
    past[0, [2, 9]] = math.nan  # a lagged input and a value of the context
    past[1, -1] = math.nan  # the last value before the origin
    future[2, 1] = math.nan  # a target inside the horizon
    loss = model.loss(past, time, series, future)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    out = model.eval().forecast(past, time, series, samples=16)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert torch.isfinite(model.forward(past, time, series)).all()
    # a missing last target counts for nothing: the loss is that of the horizon without its last step
    cut = future.clone()
    cut[:, -1] = math.nan
    torch.testing.assert_close(model.loss(past, time, series, cut), model.loss(past, time[:, :-1], series, future[:, :-1]))


def test_scaling_ignores_missing_values():
    model = _model("student_t")
    past = torch.tensor([[math.nan] * 4 + [2.0, -4.0, math.nan, 6.0, 0.0, math.nan, 4.0, math.nan]])  # L = 12
    loc, scale = model.scale(past)  # over the last C = 8 values: 2, -4, 6, 0, 4 observed
    assert loc.item() == 0 and scale.item() == pytest.approx(16 / 5)
    standard = _model("student_t", scaling="standard")
    loc, scale = standard.scale(past)
    assert loc.item() == pytest.approx(8 / 5) and scale.item() == pytest.approx(math.sqrt((0.16 + 31.36 + 19.36 + 2.56 + 5.76) / 5))
    loc, scale = model.scale(torch.full((1, 12), math.nan))  # nothing to scale by: 1, not NaN or a division by 0
    assert loc.item() == 0 and scale.item() == 1


def test_the_untrained_quantile_head_starts_at_the_seasonal_naive_forecast():
    model = _model("quantile", baseline="seasonal", seed=7)
    past, time, series, _ = _inputs(seed=4)
    past[:, :3] = math.nan  # older than a season: the baseline does not read them
    median = model.forecast(past, time, series)["median"]  # (B, H)
    expected = torch.tensor(np.stack([seasonal_naive(p, H, M) for p in past.double().numpy()]), dtype=torch.float32)
    torch.testing.assert_close(median, expected, rtol=1e-5, atol=1e-4)
    # without the baseline the same head does not start there
    plain = _model("quantile", baseline="none", seed=7).forecast(past, time, series)["median"]
    assert not torch.allclose(plain, expected, atol=1e-2)


@pytest.mark.parametrize("head", ["student_t", "quantile"])
def test_a_too_short_past_or_wrong_time_features_raise(head):
    model = _model(head)
    past, time, series, future = _inputs()
    assert model.past_length == C + M
    with pytest.raises(ValueError, match=f"at least {C + M} steps"):
        model.forecast(past[:, 1:], time, series)
    with pytest.raises(ValueError, match=f"at least {C + M} steps"):
        model.loss(past[:, 1:], time, series, future)
    for bad in (time[..., :1], time[:, 1:], time[0]):
        with pytest.raises(ValueError, match="time: expected"):
            model.forecast(past, bad, series)
    with pytest.raises(ValueError, match="time: expected"):
        model.loss(past, time[:, :-1], series, future)


def test_the_negative_binomial_head_refuses_values_that_are_not_counts():
    from stackrnn.errors import InputError

    model = _model("negative_binomial")
    past, time, series, future = _inputs()
    future[0, 0] = 2.5
    with pytest.raises(InputError, match="counts"):
        model.loss(past, time, series, future)
