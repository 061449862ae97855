"""Benchmark: training in bfloat16 autocast against float32, on the d2l configuration.

The d2l model: one-hot characters (The Time Machine, d2l preprocessing, first 10,000 characters for training,
the next 5,000 for validation), a 2-layer LSTM of 256 units; batches of 32 windows of 35 steps; SGD lr 2,
clipping at 1. Both runs go through `stackrnn train` with the same seed; only `--precision` differs.

  step time   the median seconds per training step (from the tokens/s that train() logs every 20 steps,
              which leaves out evaluation and checkpoints), fp32 / bf16. Target: >= 1.8 on a CPU with
              AVX-512 BF16 or AMX (the issue's figure for such CPUs is about 2.4).
  quality     validation perplexity after the same number of steps: bf16 within 2% of fp32.

On CPUs without a bfloat16 RNN kernel in oneDNN (no AVX-512 BF16), the recurrent layers fall back to float32
and the ratio says so. Runs alternate fp32, bf16 over --rounds rounds.

    .venv/bin/python benchmarks/bench_precision.py [--steps 400] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from stackrnn.data.corpora import embedded_text, preprocess_d2l  # noqa: E402
from stackrnn.data.pipeline import DataConfig  # noqa: E402
from stackrnn.models.lm import ModelConfig  # noqa: E402
from stackrnn.models.stack_config import StackConfig  # noqa: E402
from stackrnn.optim import TrainConfig  # noqa: E402
from stackrnn.run import RunDir  # noqa: E402
from stackrnn.train import RunConfig, train  # noqa: E402

TIME_MACHINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "timemachine" / "timemachine.txt"
TOKENS_PER_STEP = 32 * 35


def run(path: Path, out: Path, precision: str, steps: int) -> tuple[list[float], float]:
    """Seconds per step of each 20-step window, and the final validation perplexity."""
    cfg = RunConfig(
        ModelConfig(stack=StackConfig(hidden_size=256, num_layers=2), embedding_size=0),
        DataConfig(data=str(path), train_chars=10_000, valid_chars=5_000, batch_size=32, num_steps=35),
        TrainConfig(epochs=10_000, max_steps=steps, optimizer="sgd", lr=2.0, clip=1.0, lr_schedule="none",
                    log_every=20, eval_every=steps, progress=False, precision=precision),
    )
    result = train(cfg, out, progress=False)
    metrics = RunDir(out).read_metrics()
    per_step = [TOKENS_PER_STEP / m["tokens_per_s"] for m in metrics if m["split"] == "train" and m.get("tokens_per_s")]
    return per_step[1:], result.valid["perplexity"]  # the first window includes warm-up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    text = TIME_MACHINE.read_text(encoding="utf-8") if TIME_MACHINE.exists() else embedded_text()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d2l.txt"
        path.write_text(preprocess_d2l(text), encoding="utf-8")
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        ppl: dict[str, list[float]] = {"fp32": [], "bf16": []}
        fell_back = False
        for r in range(args.rounds):
            for precision in ("fp32", "bf16"):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    t, p = run(path, Path(tmp) / f"{precision}{r}", precision, args.steps)
                fell_back |= any("no bfloat16 RNN kernel" in str(w.message) for w in caught)
                times[precision] += t
                ppl[precision].append(p)
    fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    print(f"corpus: {'The Time Machine' if TIME_MACHINE.exists() else 'embedded text'}; threads {torch.get_num_threads()}; "
          f"{args.steps} steps x {args.rounds} rounds each")
    print(f"step time  fp32 {1000 * fp32:.1f} ms  bf16 {1000 * bf16:.1f} ms  ratio fp32/bf16 {fp32 / bf16:.2f}  "
          f"(target >= 1.8 where the CPU has a bf16 RNN kernel)")
    if fell_back:
        print("           this CPU has no bfloat16 RNN kernel: the recurrent layers ran in float32 under bf16")
    p32, p16 = statistics.median(ppl["fp32"]), statistics.median(ppl["bf16"])
    print(f"valid ppl  fp32 {p32:.3f}  bf16 {p16:.3f}  difference {100 * (p16 - p32) / p32:+.2f}% (target within 2%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
