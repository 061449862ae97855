"""Benchmark: what each hand-written piece of the CPU engine buys, in a whole training step.

The issue's rule (DESIGN.md, "Fast paths, and what they must earn"): a piece stays only while a whole training step
is at least 10% faster with it. Pieces, each switched by stackrnn.settings (see there):

    gemm    the compiled gemm (matmul.py, csrc/gemm.h) for every product of the engine; off, torch's products,
            and with them the LSTM's C time loops (csrc/loops.h run their products by the same gemm): the C step
            kernels run in a Python loop instead (on/off compares settings gemm=True with gemm=False)
    pool    the kept memory of scratch.py; off, fresh tensors every call (pool=True vs pool=False)

(A third piece, oneDNN packing of the recurrence's large weights where the compiled gemm does not run, was measured
by this script with gemm off, and removed: docs/benchmarks.md has its figures.)

Cases: input (T=35, B=32, D=28) as bench_stack.py, 2-layer LSTM stacks in training that run the engine: zoneout
0.1, layer norm, recurrent dropout 0.25, at hidden 256 and 1024; and for the pool (whose other user is weight
drop's dropped W_hh, scratch.reusable), LSTM(H, weight_drop=0.5) x 2. One training step: forward, loss =
sum(output * W), backward, SGD step, zero_grad. Every configuration of a case runs once per round, in an order
that rotates from round to round, all in one process; reported: the median step per configuration and, per piece,
the ratio off / on of the medians (above 1: the piece buys that much).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_engine_pieces.py --threads 2
    .venv/bin/python benchmarks/bench_engine_pieces.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from stackrnn import LSTM, StackedRNN, kernels, settings  # noqa: E402

STEPS, BATCH, FEATURES = 35, 32, 28
OPTIONS = {"zoneout": dict(zoneout=0.1), "layer norm": dict(layer_norm=True),
           "recurrent dropout": dict(recurrent_dropout=0.25), "weight drop": dict(weight_drop=0.5)}
CONFIGS = {"all on": {}, "gemm off": dict(gemm=False), "pool off": dict(pool=False)}
# piece -> (configuration with it off, with it on)
PIECES = {"gemm": ("gemm off", "all on"), "pool": ("pool off", "all on")}


def training_step(stack, optimizer, x, w) -> float:
    t0 = time.perf_counter()
    out = stack(x)[0]
    (out * w).sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def run_case(option: str, hidden: int, rounds: int, warmup: int) -> dict:
    torch.manual_seed(0)
    stack = StackedRNN(FEATURES, layers=[LSTM(hidden, **OPTIONS[option])] * 2).train()
    optimizer = torch.optim.SGD(stack.parameters(), lr=1e-4)
    x = torch.randn(STEPS, BATCH, FEATURES)
    w = torch.randn(STEPS, BATCH, hidden)
    configs = ["all on", "pool off"] if option == "weight drop" else list(CONFIGS)
    times = {name: [] for name in configs}
    for r in range(warmup + rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for name in order:
            with settings.use(**CONFIGS[name]):
                t = training_step(stack, optimizer, x, w)
            if r >= warmup:
                times[name].append(t)
    medians = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    ratios = {piece: medians[off] / medians[on] for piece, (off, on) in PIECES.items() if off in medians}
    return {"case": f"{option} h{hidden}", "median_ms": medians, "ratio": ratios}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30, help="timed rounds at hidden 256 (hidden 1024: a quarter)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--only", metavar="TEXT", help="only the cases whose name contains TEXT")
    args = p.parse_args(argv)
    rounds, warmup = (2, 1) if args.quick else (args.rounds, args.warmup)
    if args.threads:
        torch.set_num_threads(args.threads)
    if kernels.steps() is None:
        print("no compiled kernels here: nothing to measure")
        return 1
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"torch {torch.__version__} | cpu ({os.cpu_count()} cores) | threads {torch.get_num_threads()} | "
          f"input (T={STEPS}, B={BATCH}, D={FEATURES}) | load avg {load} | big products: settings.matmul="
          f"{settings.matmul}")
    print(f"{'case':24s} " + " ".join(f"{name:>17s}" for name in CONFIGS) + "   off/on: "
          + " ".join(f"{piece:>6s}" for piece in PIECES))
    for hidden in (256, 1024):
        for option in OPTIONS:
            name = f"{option} h{hidden}"
            if args.only and args.only not in name:
                continue
            result = run_case(option, hidden, rounds if hidden == 256 else max(2, rounds // 4), warmup)
            cells = [f"{result['median_ms'][c]:14.1f} ms" if c in result["median_ms"] else f"{'-':>17s}"
                     for c in CONFIGS]
            ratios = [f"{result['ratio'][piece]:6.3f}" if piece in result["ratio"] else f"{'-':>6s}"
                      for piece in PIECES]
            print(f"{name:24s} " + " ".join(cells) + "           " + " ".join(ratios), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
