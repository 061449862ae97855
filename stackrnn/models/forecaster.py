"""Forecaster: one model for many time series, as GluonTS's DeepAR is (Salinas et al. 2020), with MQ-RNN's
direct quantile head (Wen et al. 2017) as the other kind of output.

Each series is scaled by its own statistics over the conditioning window (undone on output), and a StackedRNN
reads it step by step. The input at step t is built from the scaled past only: the lagged values z_{t-l} for
every lag l (1 is the previous value; 24 and 168 for hourly data), the time features of t (calendar or
position in the season), the series' embedding and its log scale. Two kinds of head:

- a distribution (Student-t, Gaussian, or negative binomial for counts), trained by likelihood over the whole
  window (conditioning range and horizon, teacher-forced) and forecast by sampling paths one step at a time,
  each sample fed back as the next step's input: every series' N paths run as one batch of B * N rows;
- quantiles (MQ-RNN): the stack reads the conditioning range, and from its last output one small MLP, shared by
  the horizon's steps, gives every quantile of every step at once from the step's time features and the
  seasonal lags known at the forecast origin. Trained by the pinball loss; no sampling, no feedback.

Dimension key: B series (batch), L past steps given (context + the largest lag), C context steps the stack
reads, H horizon, F time features, K lags, Q quantiles, N sample paths, E series embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import nested, option
from ..errors import InputError
from ..layers import LayerSpec, map_state
from ..stack import StackedRNN
from .stack_config import StackConfig

DISTRIBUTIONS = ("student_t", "gaussian", "negative_binomial")
HEADS = (*DISTRIBUTIONS, "quantile")
SCALINGS = ("mean_abs", "standard", "none")
BASELINES = ("seasonal", "none")
WEIGHTINGS = ("none", "seasonal")


@dataclass
class ForecasterConfig:
    """[model]: the forecaster's architecture."""

    stack: StackConfig = nested(StackConfig, "the recurrent stack ([model.stack])", hidden=("bidirectional",),
                                hidden_size=64)
    head: str = option("student_t", "output: a distribution sampled into paths (student_t, gaussian, negative_binomial "
                       "for counts), or quantile (MQ-RNN: every quantile of every step at once)", choices=HEADS)
    quantiles: list = option([0.025, 0.1, 0.5, 0.9, 0.975], "the quantiles forecast (the 80% and 95% intervals and the "
                             "median, the point forecast, by default); the quantile head learns exactly these")
    embedding_size: int = option(16, "size of each series' learned embedding; 0: none (a new series can be forecast)",
                                 within="[0, inf)")
    scaling: str = option("mean_abs", "per-series scaling over the context: mean_abs (DeepAR: divide by the mean "
                          "absolute value), standard (subtract the mean, divide by the deviation) or none",
                          choices=SCALINGS)
    mlp_size: int = option(64, "quantile head: hidden units of the MLP shared by the horizon's steps",
                           within="[1, inf)")
    baseline: str = option("seasonal", "quantile head: forecast offsets from the seasonal naive forecast (the value one "
                           "season before), so the untrained model starts as that baseline; none: from 0",
                           choices=BASELINES)
    weighting: str = option("none", "weigh each window's loss by its scale over its mean absolute seasonal difference "
                            "(seasonal), counting errors in MASE's units; none: every scaled value alike",
                            choices=WEIGHTINGS)

    def layer_specs(self) -> list[LayerSpec]:
        return self.stack.specs("model.stack", causal=True)

    def validate(self) -> None:
        q = self.quantiles
        if not q or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1 for x in q) \
                or sorted(set(q)) != list(q) or 0.5 not in q:
            raise InputError(f"model.quantiles: expected increasing numbers in (0, 1) that include 0.5 (the point "
                             f"forecast), got {q!r}")
        if self.head == "negative_binomial" and self.scaling != "mean_abs":
            raise InputError("model.scaling: the negative binomial head counts from zero, so it scales by the mean "
                             f"only (mean_abs); got {self.scaling!r}")
        self.stack.check(1, "model.stack", causal=True)


def pinball(y: Tensor, q: Tensor, levels: Tensor) -> Tensor:
    """The quantile (pinball) loss of each forecast quantile: y (...), q (..., Q), levels (Q,) -> (..., Q)."""
    diff = y.unsqueeze(-1) - q
    return torch.maximum(levels * diff, (levels - 1) * diff)


class Forecaster(nn.Module):
    """A global forecasting model over a StackedRNN (see the module docstring).

    Args:
        num_series: how many series the embedding knows (0: no embedding).
        layers, stack options: the StackedRNN's layers (bottom first) and keyword options.
        context: C, the steps the stack reads before the forecast origin.
        horizon: H, the steps forecast (the quantile head's outputs; sampling may stop earlier).
        lags: K lags >= 1 of the value fed at every step (1: the previous value).
        time_features: F, the time features of each step that the caller supplies (calendar, position in the
            season, covariates known in the future).
        head, quantiles, embedding_size, scaling, mlp_size: as ForecasterConfig.

    Inputs of every method: past (B, L) the values before the forecast origin, NaN where missing, with
    L >= C + max(lags); time (B, L + H, F) the time features of those steps and the horizon's; series (B,) ids
    into the embedding (ignored without one); future (B, H) the horizon's values (NaN where missing) for `loss`.
    """

    def __init__(self, num_series: int, layers: list[LayerSpec], *, context: int, horizon: int, lags: tuple[int, ...],
                 time_features: int, head: str = "student_t", quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
                 embedding_size: int = 16, scaling: str = "mean_abs", mlp_size: int = 64, season: int = 1,
                 weighting: str = "none", baseline: str = "none", **stack_options) -> None:
        super().__init__()
        if head not in HEADS or scaling not in SCALINGS:
            raise ValueError(f"head: expected one of {HEADS} and scaling one of {SCALINGS}, got {head!r}, {scaling!r}")
        if context < 1 or horizon < 1 or not lags or min(lags) < 1:
            raise ValueError(f"expected context >= 1, horizon >= 1 and lags >= 1, got {context}, {horizon}, {lags}")
        self.context, self.horizon, self.lags = context, horizon, tuple(sorted(set(lags)))
        self.head, self.scaling, self.time_features = head, scaling, time_features
        self.season, self.weighting, self.baseline = season, weighting, baseline
        self.register_buffer("levels", torch.tensor(quantiles, dtype=torch.float32), persistent=False)
        self.median_index = list(quantiles).index(0.5) if 0.5 in quantiles else len(quantiles) // 2
        self.embedding = nn.Embedding(num_series, embedding_size) if embedding_size and num_series else None
        static = (embedding_size if self.embedding is not None else 0) + 1  # + log scale
        self.rnn = StackedRNN(len(self.lags) + time_features + static, layers=layers, batch_first=True, **stack_options)
        top = self.rnn.output_size
        if head in DISTRIBUTIONS:
            self.out = nn.Linear(top, 3 if head == "student_t" else 2)
        else:
            # the horizon step's own inputs: its time features, which step it is, the seasonal lags known at the origin
            seasonal = sum(1 for lag in self.lags if lag > 1)
            self.out = nn.Sequential(nn.Linear(top + time_features + horizon + seasonal, mlp_size), nn.ReLU(),
                                     nn.Linear(mlp_size, len(quantiles)))
            if baseline != "none":  # start as the baseline itself: the corrections begin at zero
                nn.init.zeros_(self.out[-1].weight)
                nn.init.zeros_(self.out[-1].bias)

    @property
    def past_length(self) -> int:
        """L: how many past values every method needs."""
        return self.context + max(self.lags)

    @classmethod
    def from_config(cls, cfg: ForecasterConfig, num_series: int, *, context: int, horizon: int, lags: tuple[int, ...],
                    time_features: int, season: int) -> Forecaster:
        return cls(num_series, cfg.layer_specs(), context=context, horizon=horizon, lags=lags,
                   time_features=time_features, head=cfg.head, quantiles=tuple(cfg.quantiles),
                   embedding_size=cfg.embedding_size, scaling=cfg.scaling, mlp_size=cfg.mlp_size, season=season,
                   weighting=cfg.weighting, baseline=cfg.baseline if cfg.head == "quantile" else "none",
                   **cfg.stack.options())

    # -- scaling and inputs -----------------------------------------------------------------------------------
    def scale(self, past: Tensor) -> tuple[Tensor, Tensor]:
        """(loc, scale), each (B, 1), of every series over its last C past values (missing ones ignored); a
        series with nothing to scale by (all zero or missing) keeps scale 1."""
        window = past[:, -self.context:]
        seen = ~torch.isnan(window)
        count = seen.sum(1, keepdim=True).clamp(min=1)
        values = torch.where(seen, window, torch.zeros_like(window))
        loc = torch.zeros_like(count, dtype=past.dtype)
        if self.scaling == "none":
            return loc, torch.ones_like(loc)
        if self.scaling == "standard":
            loc = values.sum(1, keepdim=True) / count
            spread = (torch.where(seen, window - loc, torch.zeros_like(window)).pow(2).sum(1, keepdim=True) / count).sqrt()
        else:
            spread = values.abs().sum(1, keepdim=True) / count
        return loc, torch.where(spread > 0, spread, torch.ones_like(spread))

    def _static(self, series: Tensor | None, scale: Tensor) -> Tensor:
        """(B, E + 1): the series' embedding and its log scale (DeepAR feeds it, so the model knows the magnitude)."""
        parts = [torch.log1p(scale)]
        if self.embedding is not None:
            parts.insert(0, self.embedding(series))
        return torch.cat(parts, 1)

    def _inputs(self, z: Tensor, time: Tensor, static: Tensor, first: int, last: int) -> Tensor:
        """The stack's inputs (B, T, K + F + E + 1) for the T = last - first steps first..last-1 of the scaled
        values z (B, >= last - 1), 0 where missing: each step's lagged values, its time features (time: the
        features of all the steps (B, >= last, F), or of these steps only (B, T, F)) and the static features."""
        steps = torch.arange(first, last, device=z.device)
        lagged = torch.stack([z[:, steps - lag] for lag in self.lags], -1)  # (B, T, K)
        time = time if time.shape[1] == last - first else time[:, first:last]
        return torch.cat([lagged, time, static[:, None].expand(-1, last - first, -1)], -1)

    def _prepare(self, past: Tensor, series: Tensor | None, future: Tensor | None = None):
        """The scaled values (past then future, missing -> 0) (B, L + H'), whether each was observed, the
        (loc, scale), and the static features."""
        if past.shape[1] < self.past_length:
            raise ValueError(f"past: expected at least {self.past_length} steps (context {self.context} + largest "
                             f"lag {max(self.lags)}), got {past.shape[1]}")
        past = past[:, -self.past_length:]
        loc, scale = self.scale(past)
        values = past if future is None else torch.cat([past, future], 1)
        seen = ~torch.isnan(values)
        z = torch.where(seen, (values - loc) / scale, torch.zeros_like(values))
        return z, seen, loc, scale, self._static(series, scale)

    # -- training ---------------------------------------------------------------------------------------------
    def loss(self, past: Tensor, time: Tensor, series: Tensor | None, future: Tensor) -> Tensor:
        """The mean loss per observed target value: the negative log-likelihood of the scaled values over the
        context and the horizon (distribution heads), or the pinball loss of the scaled horizon averaged over
        the quantiles (quantile head)."""
        L, H = self.past_length, future.shape[1]
        self._check_time(time, L + H)
        z, seen, loc, scale, static = self._prepare(past, series, future)
        unit = self._unit(past[:, -L:], scale)
        if self.head == "quantile":
            q = self._quantiles(z[:, :L], time, static, H, unit)  # (B, H, Q)
            # in the head's units: with weighting "seasonal", MASE's (the errors count as MASE counts them)
            losses, mask = pinball(z[:, L:], q, self.levels).mean(-1) / unit, seen[:, L:]
        else:
            first = L - self.context
            out, _ = self.rnn(self._inputs(z, time, static, first, L + H))
            target = (past[:, -L:] if H == 0 else torch.cat([past[:, -L:], future], 1))[:, first:]
            # a likelihood's outputs are not in those units, so a weight stands for them, bounded against outliers
            losses = -self._log_prob(self.out(out), target, loc, scale) * (1 / unit).clamp(max=100.0)
            mask = seen[:, first:]
        return (losses * mask).sum() / mask.sum().clamp(min=1)

    def _unit(self, past: Tensor, scale: Tensor) -> Tensor:
        """(B, 1) the unit of each series' corrections and loss, in scaled values: 1, or with weighting
        "seasonal" the mean absolute seasonal difference of its past (MASE's denominator) over its scale. A
        series whose seasons repeat closely has a small unit: the quantile head's corrections of its seasonal
        naive forecast are as small, and its errors weigh in the loss as much as MASE makes them weigh (on M4
        Hourly the ratio spans 0.6 to 1,800: in scaled units alone, training made those series' MASE 30 times
        the seasonal naive forecast's)."""
        if self.weighting == "none":
            return torch.ones_like(scale)
        m = self.season if past.shape[1] > self.season else 1
        diff = (past[:, m:] - past[:, :-m]).abs()
        seen = ~torch.isnan(diff)
        d = torch.where(seen, diff, torch.zeros_like(diff)).sum(1, keepdim=True) / seen.sum(1, keepdim=True).clamp(min=1)
        return torch.where(d > 0, d / scale, torch.ones_like(d))

    def _check_time(self, time: Tensor, steps: int) -> None:
        if time.dim() != 3 or time.shape[1] != steps or time.shape[2] != self.time_features:
            raise ValueError(f"time: expected the features of the {steps} steps of the last past values and the "
                             f"horizon, (B, {steps}, {self.time_features}), got {tuple(time.shape)}")

    def _distribution(self, params: Tensor, loc: Tensor, scale: Tensor):
        """The head's distribution over the scaled value (over the count itself for the negative binomial)."""
        nn_ = nn.functional
        if self.head == "negative_binomial":
            # DeepAR's parametrisation: mean mu * scale, shape alpha / sqrt(scale), so one model fits big and
            # small counts
            mu = nn_.softplus(params[..., 0]) * scale
            alpha = nn_.softplus(params[..., 1]) / scale.sqrt() + 1e-6
            return torch.distributions.NegativeBinomial(total_count=1 / alpha, logits=torch.log(mu * alpha + 1e-12))
        sigma = nn_.softplus(params[..., 1]) + 1e-4
        if self.head == "gaussian":
            return torch.distributions.Normal(params[..., 0], sigma)
        return torch.distributions.StudentT(2 + nn_.softplus(params[..., 2]), params[..., 0], sigma)

    def _log_prob(self, params: Tensor, target: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        """Log-likelihood of each target value (B, T); missing targets give 0 (they are masked)."""
        seen = ~torch.isnan(target)
        if self.head == "negative_binomial":
            if bool(((target < 0) | (target != target.round()))[seen].any()):
                raise InputError("the negative binomial head models counts, but the series hold negative or "
                                 "fractional values: use head = 'student_t' or 'gaussian'")
            value = torch.where(seen, target, torch.zeros_like(target))
        else:
            value = torch.where(seen, (target - loc) / scale, torch.zeros_like(target))
        return self._distribution(params, loc, scale).log_prob(value)

    def _quantiles(self, z_past: Tensor, time: Tensor, static: Tensor, H: int, unit: Tensor) -> Tensor:
        """The quantile head: (B, H, Q) scaled quantiles, increasing along Q by construction (each above the one
        below by a softplus), so intervals never cross; the MLP's outputs are corrections in `unit`s (B, 1)."""
        L = self.past_length
        out, _ = self.rnn(self._inputs(z_past, time, static, L - self.context + 1, L + 1))
        h = out[:, -1]  # (B, top): the stack after reading the last past value
        steps = torch.arange(H, device=z_past.device)
        # the most recent value at the same phase of each seasonal lag, known at the origin: z[L + h - lag * k]
        seasonal = [z_past[:, L + steps - lag * ((steps // lag) + 1)] for lag in self.lags if lag > 1]
        parts = [h[:, None].expand(-1, H, -1), time[:, L:L + H],
                 torch.eye(self.horizon, device=h.device, dtype=h.dtype)[:H].expand(h.shape[0], -1, -1)]
        raw = self.out(torch.cat(parts + [torch.stack(seasonal, -1)] if seasonal else parts, -1))  # (B, H, Q)
        return self._ordered(raw) * unit[..., None] + self._reference(z_past, steps)[..., None]

    def _ordered(self, raw: Tensor) -> Tensor:
        """Quantiles (..., Q) increasing by construction from raw outputs (..., Q): the median is its own output,
        and each quantile away from it a softplus further out, so intervals never cross."""
        k = self.median_index
        up = nn.functional.softplus(raw[..., k + 1:]).cumsum(-1)
        down = nn.functional.softplus(raw[..., :k].flip(-1)).cumsum(-1).flip(-1)
        median = raw[..., k:k + 1]
        return torch.cat([median - down, median, median + up], -1)

    def _reference(self, z: Tensor, steps: Tensor) -> Tensor:
        """What the head's outputs are offsets from, at steps (T,) counted from the origin (0: the first step
        after the past): with baseline "seasonal", the seasonal naive forecast, the last value one season
        before (B, T), so an untrained model starts as that classic baseline and learns its corrections; else 0."""
        if self.baseline == "none":
            return z.new_zeros(z.shape[0], steps.numel())
        m, L = self.season, self.past_length
        return z[:, L + steps - m * ((steps // m) + 1)]

    # -- forecasting ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def forecast(self, past: Tensor, time: Tensor, series: Tensor | None, horizon: int | None = None, *,
                 samples: int = 100, seeds: Tensor | None = None) -> dict[str, Tensor]:
        """Forecast `horizon` steps (default H) after `past`.

        Returns {"quantiles": (B, H', Q) at the model's quantile levels, "median": (B, H'), "mean": (B, H')} on
        the series' own scale, and for distribution heads "paths": (B, N, H') the sampled paths. `seeds` (B,)
        gives every series its own random stream (default: its position), so a series' paths are the same
        alone and in any batch (the negative binomial head draws from torch's global stream instead).
        """
        H = self.horizon if horizon is None else horizon
        if not 1 <= H <= self.horizon and self.head == "quantile":
            raise ValueError(f"horizon: the quantile head forecasts 1 to {self.horizon} steps, got {H}")
        L = self.past_length
        self._check_time(time, L + H)
        z, _, loc, scale, static = self._prepare(past, series)
        if self.head == "quantile":
            q = self._quantiles(z, time, static, H, self._unit(past[:, -L:], scale)) * scale[..., None] + loc[..., None]
            median = q[..., self.median_index]
            return {"quantiles": q, "median": median, "mean": median}
        paths = self._sample(z, time, static, loc, scale, H, samples, seeds)
        levels = self.levels.to(paths.dtype)
        # (the median as torch.quantile takes it, as the 0.5 quantile is: Tensor.median takes the lower of the
        # middle two of an even number of paths)
        return {"paths": paths, "quantiles": torch.quantile(paths, levels, dim=1).permute(1, 2, 0),
                "median": torch.quantile(paths, 0.5, dim=1), "mean": paths.mean(1)}

    def _sample(self, z: Tensor, time: Tensor, static: Tensor, loc: Tensor, scale: Tensor, H: int, N: int,
                seeds: Tensor | None) -> Tensor:
        """(B, N, H) paths: the stack reads the context once, then the B * N rows step through the horizon, each
        step's sample the next step's lag-1 input."""
        B, L = z.shape[0], self.past_length
        _, state = self.rnn(self._inputs(z, time, static, L - self.context, L))
        noise = self._noise(B, N, H, z.device, seeds)  # (B, N, H, 16): uniforms, each series from its own stream
        rep = lambda t: t.repeat_interleave(N, 0)  # noqa: E731  (B, ...) -> (B * N, ...), a series' paths together
        state = map_state(lambda s: s.repeat_interleave(N, 1), state)  # states are (K, B, H)
        buffer = torch.cat([rep(z), z.new_zeros(B * N, H)], 1)  # (B * N, L + H) scaled values, samples appended
        static, loc_n, scale_n = rep(static), rep(loc), rep(scale)
        noise = noise.reshape(B * N, H, -1)
        for h in range(H):
            step_time = rep(time[:, L + h:L + h + 1])  # (B * N, 1, F)
            out, state = self.rnn(self._inputs(buffer, step_time, static, L + h, L + h + 1), state)
            params = self.out(out[:, 0])  # (B * N, P)
            value = self._draw(params, loc_n, scale_n, noise[:, h])  # (B * N,) scaled
            buffer[:, L + h] = value
        return (buffer[:, L:] * scale_n + loc_n).reshape(B, N, H)

    @staticmethod
    def _noise(B: int, N: int, H: int, device, seeds: Tensor | None) -> Tensor:
        seeds = torch.arange(B) if seeds is None else seeds
        streams = [torch.rand(N, H, 16, generator=torch.Generator().manual_seed(int(s))) for s in seeds.tolist()]
        return torch.stack(streams).to(device)

    def _draw(self, params: Tensor, loc: Tensor, scale: Tensor, u: Tensor) -> Tensor:
        """One scaled sample per row from the head's distribution, made from the uniforms u (rows, 16)."""
        nn_ = nn.functional
        if self.head == "negative_binomial":
            dist = self._distribution(params[:, None], loc, scale)
            return dist.sample()[:, 0] / scale[:, 0]
        mu, sigma = params[:, 0], nn_.softplus(params[:, 1]) + 1e-4
        if self.head == "gaussian":
            return mu + sigma * torch.special.ndtri(u[:, 0].clamp(1e-7, 1 - 1e-7))
        # Student-t by Bailey's polar method: pairs (a, b) uniform in the square, the first that falls inside the
        # unit disc gives t = a * sqrt(df * (w^(-2/df) - 1) / w); seven pairs miss it with probability 2e-5, when
        # the last pair is used as it is (clamped into the disc)
        df = 2 + nn_.softplus(params[:, 2])
        a, b = (2 * u[:, 0::2] - 1), (2 * u[:, 1::2] - 1)  # (rows, 8) each
        w = a.pow(2) + b.pow(2)
        inside = (w < 1) & (w > 0)
        pick = torch.where(inside.any(1), inside.float().argmax(1), torch.full_like(df, 7, dtype=torch.long))
        a, w = a.gather(1, pick[:, None])[:, 0], w.gather(1, pick[:, None])[:, 0].clamp(1e-12, 1 - 1e-7)
        t = a * torch.sqrt(df * (w.pow(-2 / df) - 1) / w)
        return mu + sigma * t

    def forward(self, past: Tensor, time: Tensor, series: Tensor | None = None) -> Tensor:
        """A point forecast (B, H) of `past`, deterministic, for the summary table and export: the quantile
        head's median, or a distribution head's path that feeds back the mean of each step's distribution."""
        if self.head == "quantile":
            return self.forecast(past, time, series)["median"]
        L = self.past_length
        self._check_time(time, time.shape[1])
        H = min(self.horizon, time.shape[1] - L)
        z, _, loc, scale, static = self._prepare(past, series)
        buffer = torch.cat([z, z.new_zeros(z.shape[0], H)], 1)
        _, state = self.rnn(self._inputs(z, time, static, L - self.context, L))
        for h in range(H):
            out, state = self.rnn(self._inputs(buffer, time, static, L + h, L + h + 1), state)
            mean = self._distribution(self.out(out[:, 0])[:, None], loc, scale).mean[:, 0]
            buffer[:, L + h] = mean / scale[:, 0] if self.head == "negative_binomial" else mean
        return buffer[:, L:] * scale + loc
