"""Benchmark: the forecaster against the same model written by hand with torch.nn.LSTM, on M4 Hourly.

  train     training windows per second: stackrnn's training step as the forecast task runs it
            (ForecastTask.step, backward, gradient clipping, Adam step) against a hand-written DeepAR-style
            module (torch.nn.Embedding, torch.nn.LSTM, torch.nn.Linear, torch.distributions) computing the same
            thing: mean-absolute scaling over the context, lagged scaled values, time features, the series
            embedding and log scale as inputs; the Student-t likelihood over context and horizon, or MQ-RNN's
            quantile head (an MLP over the last state, the step's features and the seasonal lags, offsets from
            the seasonal naive forecast, pinball loss). Both hold the same weights and are checked to give the
            same loss and gradients before timing; both step through the same pre-drawn random windows (drawing
            them is timed apart, for information). Target: >= 0.95.
  sample    forecasting all 414 series with 100 sample paths (the Student-t head) as stackrnn eval and forecast
            do it (ForecastTask.predict: Forecaster.forecast on 40 series x 100 paths a call), against a loop of
            100 calls of one path each (the naive way: paths not batched, series still batched); for information
            also all 41,400 paths in one Forecaster.forecast call, and, extrapolated from 10 calls, one series and
            one path a call. Information: the paths' speed-up.

The model's sizes are examples/m4-hourly.toml's when it exists, else a 2-layer LSTM of 64 units, context 168,
lags 1, 24, 168, horizon 48, batch 64. The series are ../shared/data/m4's Hourly-{train,test}.csv, or
synthetic series of the same shape (414, 700 or 960 values, daily and weekly seasons) where it is absent.
Candidates are interleaved round by round, in alternating order; medians are reported.

    .venv/bin/python benchmarks/bench_forecast.py [--rounds 15] [--steps 5] [--threads N] [--only train|sample]
    .venv/bin/python benchmarks/bench_forecast.py --smoke     # seconds: the code path on a few small series
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from stackrnn.models.forecaster import Forecaster, pinball  # noqa: E402
from stackrnn.tasks.forecast import ForecastTask, Window  # noqa: E402
from stackrnn.train import build_config  # noqa: E402

M4 = ROOT.parent / "shared" / "data" / "m4"
EXAMPLE = ROOT / "examples" / "m4-hourly.toml"
#: the sizes used when examples/m4-hourly.toml does not exist (yet)
DEFAULT = {"task": "forecast", "model": {"stack": {"cell": "lstm", "hidden_size": 64, "num_layers": 2}},
           "data": {"freq": "H", "horizon": 48, "context_length": 168, "lags": [1, 24, 168], "batch_size": 64}}


# -- data and config ---------------------------------------------------------------------------------------------
def synthetic_m4(folder: Path, series: int = 414, seed: int = 0) -> tuple[Path, Path]:
    """Wide CSVs shaped like M4 Hourly: `series` rows of 700 or 960 hourly values with daily and weekly seasons,
    a trend and noise (positive), and 48 test values each."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for i in range(series):
        n = 700 if i % 3 else 960
        t = np.arange(n + 48)
        level = rng.uniform(10, 10_000)
        y = level * (1 + 0.3 * np.sin(2 * np.pi * (t + rng.integers(24)) / 24) + 0.1 * np.sin(2 * np.pi * t / 168)
                     + 0.0002 * t + 0.05 * rng.standard_normal(t.size))
        train.append([f"H{i + 1}", *np.round(y[:n], 2)])
        test.append([f"H{i + 1}", *np.round(y[n:], 2)])
    paths = []
    for name, rows in (("Hourly-train.csv", train), ("Hourly-test.csv", test)):
        width = max(len(r) for r in rows)
        lines = [",".join(f'"V{j + 1}"' for j in range(width))]
        lines += [",".join([f'"{r[0]}"', *map(str, r[1:])] + [""] * (width - len(r))) for r in rows]
        (folder / name).write_text("\n".join(lines) + "\n")
        paths.append(folder / name)
    return paths[0], paths[1]


def make_task(train_csv: Path, test_csv: Path, head: str, smoke: bool, config: Path | None = None) -> ForecastTask:
    """The forecast task of `config` (default: the example's, else DEFAULT) on these files, its data read."""
    config = str(config) if config else str(EXAMPLE) if EXAMPLE.exists() and not smoke else DEFAULT
    data = {"data": str(train_csv), "test_data": str(test_csv), "freq": "H"}
    model = {"head": head}
    if smoke:  # small enough for seconds, every part of the model still there
        data.update(batch_size=8, horizon=6, context_length=24, lags=[1, 24])
        model.update(stack={"hidden_size": 8}, mlp_size=8, weighting="seasonal", baseline="seasonal")  # the example's
    cfg = build_config(config, {"model": model, "data": data})
    task = cfg.make_task()
    task.prepare(None)
    return task


# -- the hand-written peer ---------------------------------------------------------------------------------------
class HandDeepAR(nn.Module):
    """DeepAR (and MQ-RNN's quantile head) as one would write it with torch.nn: no stackrnn inside.

    Inputs as Forecaster.loss: past (B, L) with L = C + K (K the largest lag), time (B, L + H, F), series (B,),
    future (B, H). Mean-absolute scaling over the context, missing values masked.
    """

    def __init__(self, model: Forecaster) -> None:
        super().__init__()
        rnn = model.rnn
        if model.scaling != "mean_abs":
            raise SystemExit(f"the hand-written peer scales by the mean absolute value; the config has {model.scaling!r}")
        self.C, self.lags, self.head, self.season = model.context, model.lags, model.head, model.season
        self.K, self.baseline, self.weighting = max(model.lags), model.baseline, model.weighting
        self.median = model.levels.tolist().index(0.5)
        self.embedding = nn.Embedding(*model.embedding.weight.shape) if model.embedding is not None else None
        spec = rnn.specs[0]
        self.lstm = nn.LSTM(rnn.input_size, spec.hidden_size, len(rnn.layers), batch_first=True, dropout=rnn.dropout)
        self.out = (nn.Linear(model.out.in_features, model.out.out_features) if isinstance(model.out, nn.Linear) else
                    nn.Sequential(nn.Linear(model.out[0].in_features, model.out[0].out_features), nn.ReLU(),
                                  nn.Linear(model.out[2].in_features, model.out[2].out_features)))
        self.register_buffer("levels", model.levels.clone(), persistent=False)
        self.horizon = model.horizon
        with torch.no_grad():  # the same weights
            if self.embedding is not None:
                self.embedding.weight.copy_(model.embedding.weight)
            self.lstm.load_state_dict(rnn.to_torch().state_dict())
            self.out.load_state_dict(model.out.state_dict())

    def loss(self, past, time, series, future):
        C, K = self.C, self.K
        L, H = C + K, future.shape[1]
        past = past[:, -L:]
        context = past[:, -C:]
        seen = ~torch.isnan(context)
        scale = context.abs().nan_to_num(0).sum(1, keepdim=True) / seen.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        values = torch.cat([past, future], 1)  # (B, L + H)
        observed = ~torch.isnan(values)
        z = (values / scale).nan_to_num(0)
        # with weighting "seasonal": MASE's unit, the mean absolute seasonal difference, in scaled values
        unit = torch.ones_like(scale)
        if self.weighting == "seasonal":
            m = self.season if L > self.season else 1
            d = (past[:, m:] - past[:, :-m]).abs()
            d = d.nan_to_num(0).sum(1, keepdim=True) / (~torch.isnan(d)).sum(1, keepdim=True).clamp(min=1)
            unit = torch.where(d > 0, d / scale, unit)
        static = torch.log1p(scale)
        if self.embedding is not None:
            static = torch.cat([self.embedding(series), static], 1)  # (B, E + 1)
        if self.head == "quantile":
            return self._quantile_loss(z, observed, time, static, L, H, unit)
        T = C + H  # steps K .. L + H - 1: each reads the values `lag` steps before it
        lagged = torch.stack([z[:, K - lag:K - lag + T] for lag in self.lags], -1)  # (B, T, lags)
        x = torch.cat([lagged, time[:, K:], static[:, None].expand(-1, T, -1)], -1)
        out, _ = self.lstm(x)
        p = self.out(out)  # (B, T, 3)
        F = nn.functional
        dist = torch.distributions.StudentT(2 + F.softplus(p[..., 2]), p[..., 0], F.softplus(p[..., 1]) + 1e-4)
        nll, mask = -dist.log_prob(z[:, K:]) * (1 / unit).clamp(max=100.0), observed[:, K:]
        return (nll * mask).sum() / mask.sum().clamp(min=1)

    def _quantile_loss(self, z, observed, time, static, L, H, unit):
        # the LSTM reads the context up to the origin: steps K + 1 .. L, each given the value before it
        C, K = self.C, self.K
        lagged = torch.stack([z[:, K + 1 - lag:L + 1 - lag] for lag in self.lags], -1)  # (B, C, lags)
        x = torch.cat([lagged, time[:, K + 1:L + 1], static[:, None].expand(-1, C, -1)], -1)
        out, _ = self.lstm(x)
        h = out[:, -1]  # (B, hidden)
        steps = torch.arange(H)
        seasonal = [z[:, L + steps - lag * (steps // lag + 1)] for lag in self.lags if lag > 1]  # known at the origin
        onehot = torch.eye(self.horizon)[:H].expand(h.shape[0], -1, -1)
        raw = self.out(torch.cat([h[:, None].expand(-1, H, -1), time[:, L:L + H], onehot, *[s[..., None] for s in seasonal]], -1))
        k, softplus = self.median, nn.functional.softplus  # increasing: each quantile a softplus beyond the next inner one
        q = torch.cat([raw[..., k:k + 1] - softplus(raw[..., :k].flip(-1)).cumsum(-1).flip(-1), raw[..., k:k + 1],
                       raw[..., k:k + 1] + softplus(raw[..., k + 1:]).cumsum(-1)], -1) * unit[..., None]  # (B, H, Q)
        if self.baseline == "seasonal":
            m = self.season
            q = q + z[:, L + steps - m * (steps // m + 1)][..., None]
        losses, mask = pinball(z[:, L:], q, self.levels).mean(-1) / unit, observed[:, L:]
        return (losses * mask).sum() / mask.sum().clamp(min=1)


# -- training ----------------------------------------------------------------------------------------------------
def check_same(task: ForecastTask, ours: Forecaster, theirs: HandDeepAR, batch: Window) -> float:
    """Loss and every gradient agree (in eval mode, so that dropout, if any, is off); returns the loss."""
    ours.eval(), theirs.eval()
    a = task.step(ours, batch, None, torch.device("cpu")).objective
    past, time_, rows = batch.tensors("cpu")
    b = theirs.loss(past, time_, rows, torch.as_tensor(batch.actual, dtype=torch.float32))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a.backward(), b.backward()
    grads = dict(ours.named_parameters())
    pairs = [(grads["embedding.weight"], theirs.embedding.weight)] if theirs.embedding is not None else []
    pairs += [(g, p) for g, p in zip([p for n, p in ours.named_parameters() if n.startswith("rnn.")], theirs.lstm.parameters())]
    pairs += list(zip(ours.out.parameters(), theirs.out.parameters()))
    for p, q in pairs:
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5)
    ours.zero_grad(set_to_none=True), theirs.zero_grad(set_to_none=True)
    ours.train(), theirs.train()
    return a.item()


def train_steps(step_loss, model: nn.Module, opt, batches: list[Window]) -> float:
    """Training steps through `batches` (loss, backward, clip at 1, Adam step, zero_grad); windows per second."""
    t0 = time.perf_counter()
    for batch in batches:
        loss = step_loss(batch)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return sum(len(b.rows) for b in batches) / (time.perf_counter() - t0)


def bench_train(task: ForecastTask, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    ours = task.build_model()
    theirs = HandDeepAR(ours)
    t0 = time.perf_counter()
    batches, epoch = [], 0
    while len(batches) < (rounds + 1) * steps:  # the task's own random windows, epoch after epoch
        batches += list(itertools.islice(task.batches(epoch).iter_from(0), (rounds + 1) * steps - len(batches)))
        epoch += 1
    draw = sum(len(b.rows) for b in batches) / (time.perf_counter() - t0)
    loss = check_same(task, ours, theirs, batches[0])
    cpu = torch.device("cpu")

    def their_loss(batch):
        past, time_, rows = batch.tensors(cpu)
        return theirs.loss(past, time_, rows, torch.as_tensor(batch.actual, dtype=torch.float32))

    candidates = {
        "stackrnn": (lambda b: task.step(ours, b, None, cpu).objective, ours, torch.optim.Adam(ours.parameters(), 1e-3)),
        "torch.nn": (their_loss, theirs, torch.optim.Adam(theirs.parameters(), 1e-3)),
    }
    rates = {name: [] for name in candidates}
    for r in range(rounds + 1):  # round 0 warms up
        chunk = batches[r * steps:(r + 1) * steps]
        for name in (("stackrnn", "torch.nn") if r % 2 else ("torch.nn", "stackrnn")):
            rate = train_steps(*candidates[name], chunk)
            if r:
                rates[name].append(rate)
    ratio = statistics.median(rates["stackrnn"]) / statistics.median(rates["torch.nn"])
    rounds_ratio = statistics.median(a / b for a, b in zip(rates["stackrnn"], rates["torch.nn"]))
    return {"case": f"train windows/s, {task.cfg.model.head}", "stackrnn": rates["stackrnn"], "peer": rates["torch.nn"],
            "ratio": ratio, "round_ratio": rounds_ratio, "target": 0.95, "check_loss": loss, "drawing_windows_per_s": draw}


# -- sampling ----------------------------------------------------------------------------------------------------
def bench_sample(task: ForecastTask, rounds: int, samples: int) -> dict:
    """Seconds to forecast every series' test window with `samples` paths: as stackrnn does it (ForecastTask.predict,
    which `stackrnn eval` and `stackrnn forecast` call: Forecaster.forecast on about 4,096 rows of paths a call),
    in one Forecaster.forecast call of all series, and in `samples` calls of one path each; interleaved."""
    torch.manual_seed(0)
    model = task.build_model().eval()
    window, _ = task.split("test")
    past, time_, rows = window.tensors("cpu")
    seeds = rows.clone()

    def as_stackrnn():
        return torch.as_tensor(task.predict(model, window, samples=samples)["paths"])

    def one_call():
        return model.forecast(past, time_, rows, samples=samples, seeds=seeds)["paths"]

    def one_path_a_call():  # each call from its own seeds, gathered and summarised like the batched ones
        paths = torch.cat([model.forecast(past, time_, rows, samples=1, seeds=seeds + 1_000_003 * (i + 1))["paths"]
                           for i in range(samples)], 1)  # (B, N, H)
        torch.quantile(paths, model.levels, dim=1), paths.mean(1)
        return paths

    candidates = {"stackrnn": as_stackrnn, "one call": one_call, "one path a call": one_path_a_call}
    for fn in candidates.values():
        paths = fn()
        assert paths.shape == (len(rows), samples, task.shape.horizon) and torch.isfinite(paths).all()
    times = {name: [] for name in candidates}
    for r in range(rounds):
        names = list(candidates)[r % 3:] + list(candidates)[:r % 3]  # each goes first in turn
        for name in names:
            t0 = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    # the most naive: one series and one path a call, B * N calls, extrapolated from a few
    single = []
    for i in range(min(10, len(rows))):
        t0 = time.perf_counter()
        model.forecast(past[i:i + 1], time_[i:i + 1], rows[i:i + 1], samples=1, seeds=seeds[i:i + 1])
        single.append(time.perf_counter() - t0)
    return {"case": f"forecast {len(rows)} series x {samples} paths", "seconds": times,
            "speedup": med["one path a call"] / med["stackrnn"],
            "one_series_one_path_s": statistics.median(single) * len(rows) * samples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15, help="timed interleaved training rounds (default 15)")
    p.add_argument("--steps", type=int, default=5, help="training steps per candidate and round (default 5)")
    p.add_argument("--sample-rounds", type=int, default=3, help="interleaved rounds of the sampling case (default 3)")
    p.add_argument("--samples", type=int, default=100, help="sample paths per series (default 100)")
    p.add_argument("--heads", nargs="+", default=["student_t", "quantile"], help="heads of the training case")
    p.add_argument("--config", type=Path, help="the forecasting config whose sizes to measure (default: "
                   "examples/m4-hourly.toml, else the built-in sizes above)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: the config's train.threads, else "
                   "torch's choice)")
    p.add_argument("--only", choices=("train", "sample"), help="run one case")
    p.add_argument("--smoke", action="store_true", help="a few seconds on 8 small synthetic series: the code path only")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.steps, args.sample_rounds, args.samples = 1, 1, 1, 3
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        real = (M4 / "Hourly-train.csv").exists() and not args.smoke
        files = (M4 / "Hourly-train.csv", M4 / "Hourly-test.csv") if real else \
            synthetic_m4(Path(tmp), series=8 if args.smoke else 414)
        tasks = {head: make_task(*files, head, args.smoke, args.config) for head in args.heads}
    first = next(iter(tasks.values()))
    threads = args.threads or getattr(first.cfg.train, "threads", 0)  # as `stackrnn train` would run
    if threads:
        torch.set_num_threads(threads)
    config = args.config or (EXAMPLE.relative_to(ROOT) if EXAMPLE.exists() and not args.smoke else None)
    s, stack = first.shape, first.cfg.model.stack
    print(f"torch {torch.__version__} | cpu ({os.cpu_count()} cores) | threads {torch.get_num_threads()} | load avg {load}")
    print(f"data {'M4 Hourly' if real else 'synthetic, M4 Hourly-shaped'} ({len(first.train)} series) | config "
          f"{config or 'built-in (no examples/m4-hourly.toml)'} | "
          f"{stack.cell} {stack.hidden_size} x {stack.num_layers}, context {s.context}, lags {s.lags}, horizon "
          f"{s.horizon}, batch {first.cfg.data.batch_size}, weighting {first.cfg.model.weighting}")
    if os.getloadavg()[0] > (os.cpu_count() or 1) - 1 and torch.get_num_threads() > 1:
        print("note: the CPU is busy (load avg above): torch's threads wait for each other at every kernel, which can "
              "make both candidates many times slower and their ratio noise; --threads 1 is steadier")
    results = []
    if args.only in (None, "train"):
        for head, task in tasks.items():
            r = bench_train(task, args.rounds, args.steps)
            results.append(r)
            med = lambda xs: statistics.median(xs)  # noqa: E731
            verdict = "ok" if r["ratio"] >= r["target"] else "MISS"
            print(f"{r['case']:<30} stackrnn {med(r['stackrnn']):7.0f}  torch.nn by hand {med(r['peer']):7.0f}  "
                  f"ratio {r['ratio']:.3f} (rounds {r['round_ratio']:.3f})  target >= {r['target']}: {verdict}  "
                  f"[medians of {len(r['stackrnn'])} rounds of {args.steps} steps; same loss and gradients checked; "
                  f"drawing the windows: {r['drawing_windows_per_s']:.0f}/s]", flush=True)
    if args.only in (None, "sample"):
        task = tasks.get("student_t") or tasks[args.heads[0]]
        if task.cfg.model.head == "quantile":
            print("sample: needs a distribution head (--heads student_t)")
        else:
            r = bench_sample(task, args.sample_rounds, args.samples)
            results.append(r)
            med = {k: statistics.median(v) for k, v in r["seconds"].items()}
            print(f"{r['case']:<30} stackrnn (eval's batches) {med['stackrnn']:6.2f} s  one path a call "
                  f"{med['one path a call']:6.2f} s  speed-up {r['speedup']:.1f}x  [medians of {args.sample_rounds} "
                  f"rounds]", flush=True)
            print(f"{'':<30} all paths in one Forecaster.forecast call: {med['one call']:.2f} s; one series and one "
                  f"path a call, {len(task.train) * args.samples:,} calls: {r['one_series_one_path_s']:.0f} s "
                  f"(extrapolated from 10), {r['one_series_one_path_s'] / med['stackrnn']:.0f}x stackrnn's", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"load_avg": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
