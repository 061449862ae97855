"""Benchmark: StackedRNN against hand-written torch.nn, forward + backward time per batch.

Cases (input (T=35, B=32, D=28), the d2l configuration):
  1. StackedRNN(28, 256, num_layers=2, cell="lstm")   vs torch.nn.LSTM(28, 256, 2)            target ratio <= 1.02
  2. the same at hidden 1024 (fewer repeats: it is slow on CPU)                               target ratio <= 1.02
  3. StackedRNN(28, layers=[LSTM(256), GRU(256), LSTM(256)]) vs nn.LSTM, nn.GRU, nn.LSTM in turn   target <= 1.05
  4. for information: the reference step loop, StackedRNN(..., fused=False), vs torch.nn on case 1
  5. a weight-dropped stack, LSTM(H, weight_drop=0.5) x 2 in training, vs torch.nn.LSTM(28, H, 2), H = 256 and 1024
                                                                                               target <= 1.05
  6. a residual stack, StackedRNN(28, H, 2, residual=True), vs torch.nn.LSTM(28, H, 2), H = 256 and 1024
                                                                                               target <= 1.05
  7. zoneout 0.1, recurrent dropout 0.25 and layer-norm stacks, LSTM(H, ...) x 2 in training, vs torch.nn.LSTM,
     H = 256 and 1024 (these run the engine, stackrnn/engine.py)                             target <= 1.25
  8. for information: GRU(256, zoneout=0.1) x 2 and GRU(256, recurrent_dropout=0.25) x 2 vs torch.nn.GRU
STACKRNN_KERNELS=0 (stackrnn.settings.kernels) runs the engine's cases without its C step kernels (stackrnn/kernels.py), for comparison.

One iteration is: forward, loss = sum(output * W) with a fixed random W, backward, zero_grad(set_to_none=True).
Both candidates of cases 1-4 hold the same weights, and their outputs and gradients are checked to match before
any timing; cases 5-6 compute something torch.nn cannot, so they are only checked to run and give gradients. Candidates are interleaved (A B, then B A, ...) so drift on a busy machine hits both alike; each iteration
is timed with time.perf_counter (after torch.cuda.synchronize on CUDA). Reported per candidate: median and IQR in
ms; per case: the ratio of medians (StackedRNN / torch.nn) and the median of the per-round ratios.

    .venv/bin/python benchmarks/bench_stack.py                    # full run, about 1-2 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_stack.py --quick            # smoke run, about 15 s
    .venv/bin/python benchmarks/bench_stack.py --threads 2 --repeats 100 --json results.json
    .venv/bin/python benchmarks/bench_stack.py --device cuda
    .venv/bin/python benchmarks/bench_stack.py --only h1024            # the cases whose name contains "h1024"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from stackrnn import GRU, LSTM, StackedRNN, kernels, matmul, settings  # noqa: E402

STEPS, BATCH, FEATURES = 35, 32, 28


class TorchSequence(nn.Module):
    """Separate torch.nn recurrent modules called one after the other, as a hand-written mixed stack would be."""

    def __init__(self, *modules: nn.RNNBase) -> None:
        super().__init__()
        self.mods = nn.ModuleList(modules)

    def forward(self, x):
        for m in self.mods:
            x, _ = m(x)
        return x, None


def mixed_pair(hidden: int) -> tuple[nn.Module, nn.Module]:
    """(StackedRNN LSTM-GRU-LSTM, the same layers as torch.nn modules) holding the same weights."""
    ref = TorchSequence(nn.LSTM(FEATURES, hidden), nn.GRU(hidden, hidden), nn.LSTM(hidden, hidden))
    stack = StackedRNN(FEATURES, layers=[LSTM(hidden), GRU(hidden), LSTM(hidden)])
    with torch.no_grad():
        for layer, mod in zip(stack.layers, ref.mods):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(layer.cell, name).copy_(getattr(mod, name + "_l0"))
    return stack, ref


def lstm_pair(hidden: int, fused: bool = True) -> tuple[nn.Module, nn.Module]:
    """(StackedRNN 2-layer LSTM, torch.nn.LSTM) holding the same weights."""
    stack = StackedRNN(FEATURES, hidden, num_layers=2, cell="lstm", fused=fused)
    return stack, stack.to_torch()  # to_torch copies the weights, whichever path the stack runs


def option_pair(hidden: int, gru: bool = False, **options) -> tuple[nn.Module, nn.Module]:
    """(StackedRNN with weight drop, residual connections or an engine option, the plain torch.nn.LSTM of the
    same shape; with gru=True GRU layers and torch.nn.GRU)."""
    if options.pop("weight_drop", False):
        stack = StackedRNN(FEATURES, layers=[LSTM(hidden, weight_drop=0.5)] * 2, **options)
    elif {"zoneout", "recurrent_dropout", "layer_norm"} & set(options):
        stack = StackedRNN(FEATURES, layers=[(GRU if gru else LSTM)(hidden, **options)] * 2)
    else:
        stack = StackedRNN(FEATURES, hidden, num_layers=2, **options)
    return stack.train(), (nn.GRU if gru else nn.LSTM)(FEATURES, hidden, 2)


def check_same(a: nn.Module, b: nn.Module, x: torch.Tensor, w: torch.Tensor) -> None:
    """Outputs and parameter gradients of the two candidates agree (parameters are in the same order in both)."""
    outs = []
    for m in (a, b):
        out = m(x)[0]
        (out * w).sum().backward()
        outs.append(out.detach())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    pa, pb = list(a.parameters()), list(b.parameters())
    assert [p.shape for p in pa] == [p.shape for p in pb], "parameter layouts differ"
    for p, q in zip(pa, pb):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4)
    a.zero_grad(set_to_none=True)
    b.zero_grad(set_to_none=True)


def time_step(model: nn.Module, x: torch.Tensor, w: torch.Tensor, sync) -> float:
    """One forward + backward + zero_grad, in seconds."""
    sync()
    t0 = time.perf_counter()
    out = model(x)[0]
    (out * w).sum().backward()
    model.zero_grad(set_to_none=True)
    sync()
    return time.perf_counter() - t0


def summarize(times: list[float]) -> dict:
    ms = [t * 1e3 for t in times]
    q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
    return {"median_ms": statistics.median(ms), "iqr_ms": q[2] - q[0], "times_ms": ms}


def run_case(name: str, pair, target: float | None, repeats: int, warmup: int, device: torch.device,
             same: bool = True) -> dict:
    torch.manual_seed(0)
    a, b = (m.to(device) for m in pair())
    x = torch.randn(STEPS, BATCH, FEATURES, device=device)
    w = torch.randn_like(a(x)[0])
    if same:
        check_same(a, b, x, w)
    else:  # different computations: check only that both run forward and backward
        for m in (a, b):
            (m(x)[0] * w).sum().backward()
            assert all(p.grad is not None for p in m.parameters())
            m.zero_grad(set_to_none=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ta, tb = [], []
    for r in range(warmup + repeats):
        order = ((a, ta), (b, tb)) if r % 2 == 0 else ((b, tb), (a, ta))  # alternate who goes first
        for model, sink in order:
            t = time_step(model, x, w, sync)
            if r >= warmup:
                sink.append(t)
    sa, sb = summarize(ta), summarize(tb)
    return {
        "case": name, "repeats": repeats, "warmup": warmup, "target": target,
        "stackrnn": sa, "torch": sb,
        "ratio": sa["median_ms"] / sb["median_ms"],
        "round_ratio": statistics.median(p / q for p, q in zip(ta, tb)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, help="timed rounds per case (default 60, --quick 5); hidden 1024 and the loop run fewer")
    p.add_argument("--warmup", type=int, help="untimed rounds first (default 5, --quick 1)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--only", metavar="TEXT", help="run only the cases whose name contains TEXT (e.g. 'h1024', 'zoneout')")
    args = p.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 60)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    device = torch.device(args.device)

    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"torch {torch.__version__} | device {name} | threads {torch.get_num_threads()} | "
          f"input (T={STEPS}, B={BATCH}, D={FEATURES}) | load avg {load}")
    if device.type == "cpu":  # whose the engine's products are decides much of its speed
        choice = settings.matmul
        if kernels.steps() is None:
            print("engine: no compiled kernels here, every product by torch")
        else:
            whose = "torch.mm" if matmul.big_products_by_torch() else "the compiled gemm"
            print(f"engine: products over all steps by {whose} (settings.matmul={choice}), the recurrence's by the "
                  "compiled gemm")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 1.0 and device.type == "cpu":
        print("note: the CPU looks busy (load avg above); timings may be noisy (with threads > 1, much slower: try --threads 1)")

    cases = [  # name, pair, target, repeats, warmup
        ("lstm x2 h256", lambda: lstm_pair(256), 1.02, repeats, warmup),
        ("lstm x2 h1024", lambda: lstm_pair(1024), 1.02, max(2, repeats // 4), max(1, warmup // 2)),
        ("lstm-gru-lstm h256", lambda: mixed_pair(256), 1.05, repeats, warmup),
        ("loop (fused=False) h256", lambda: lstm_pair(256, fused=False), None, max(2, repeats // 2), max(1, warmup // 2)),
    ]
    option_cases = [  # the same, but not expected to equal torch.nn
        ("weight drop h256", lambda: option_pair(256, weight_drop=True), 1.05, repeats, warmup),
        ("weight drop h1024", lambda: option_pair(1024, weight_drop=True), 1.05, max(2, repeats // 4), max(1, warmup // 2)),
        ("residual h256", lambda: option_pair(256, residual=True), 1.05, repeats, warmup),
        ("residual h1024", lambda: option_pair(1024, residual=True), 1.05, max(2, repeats // 4), max(1, warmup // 2)),
        # the engine (hand-written backward) for what the fused kernel cannot run
        ("zoneout h256", lambda: option_pair(256, zoneout=0.1), 1.25, repeats, warmup),
        ("zoneout h1024", lambda: option_pair(1024, zoneout=0.1), 1.25, max(2, repeats // 4), max(1, warmup // 2)),
        ("recurrent dropout h256", lambda: option_pair(256, recurrent_dropout=0.25), 1.25, repeats, warmup),
        ("recurrent dropout h1024", lambda: option_pair(1024, recurrent_dropout=0.25), 1.25, max(2, repeats // 4), max(1, warmup // 2)),
        ("layer norm h256", lambda: option_pair(256, layer_norm=True), 1.25, repeats, warmup),
        ("layer norm h1024", lambda: option_pair(1024, layer_norm=True), 1.25, max(2, repeats // 4), max(1, warmup // 2)),
        # GRU layers through the engine, against torch.nn.GRU: no target in the issue, for information
        ("gru zoneout h256", lambda: option_pair(256, gru=True, zoneout=0.1), None, repeats, warmup),
        ("gru recurrent dropout h256", lambda: option_pair(256, gru=True, recurrent_dropout=0.25), None, repeats,
         warmup),
    ]
    head = f"{'case':<26} {'n':>3}  {'stackrnn ms (IQR)':>18}  {'torch.nn ms (IQR)':>18}  {'ratio':>6}  {'rnd':>6}  target"
    print(head)
    print("-" * len(head))
    results = []
    for case, same in [(c, True) for c in cases] + [(c, False) for c in option_cases]:
        if args.only and args.only not in case[0]:
            continue
        r = run_case(*case, device=device, same=same)
        results.append(r)
        cell = lambda s: f"{s['median_ms']:9.1f} ({s['iqr_ms']:5.1f})"  # noqa: E731
        verdict = "(info)" if r["target"] is None else f"<= {r['target']:.2f} " + ("ok" if r["ratio"] <= r["target"] else "MISS")
        print(f"{r['case']:<26} {r['repeats']:>3}  {cell(r['stackrnn']):>18}  {cell(r['torch']):>18}  "
              f"{r['ratio']:6.3f}  {r['round_ratio']:6.3f}  {verdict}", flush=True)
    print("ratio = median(stackrnn) / median(torch.nn); rnd = median of per-round ratios; outputs and grads checked equal")

    if args.json:
        meta = {"torch": torch.__version__, "device": name, "threads": torch.get_num_threads(), "load_avg": load,
                "input": [STEPS, BATCH, FEATURES]}
        args.json.write_text(json.dumps({**meta, "cases": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
