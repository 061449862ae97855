"""Benchmark: the language-model job against hand-written PyTorch, on the d2l configuration.

The d2l model: one-hot characters (The Time Machine, d2l preprocessing, first 10,000 characters), a 2-layer
LSTM of 256 units, a linear decoder; batches of 32 windows of 35 steps; SGD lr 2, gradient clipping at 1.

  generate  characters per second at batch 1: stackrnn.generate (one batched pass over the prompt, then one
            cell step per layer and token) vs a plain loop calling torch.nn.LSTM once per step and sampling,
            carrying the state (d2l's predict_ch8, with sampling). Same weights. Target: >= 5x.
  train     training tokens per second: `stackrnn train` (the library's train() with its progress bar and
            metrics; the tokens/s it logs, which leaves out time spent evaluating and writing checkpoints) vs a
            hand-written d2l-style loop (nn.LSTM + nn.Linear, one-hot, cross-entropy, clip_grad_norm_, SGD,
            state detached between windows, no evaluation or checkpoints). Target: >= 0.95x.
            Also printed: the whole run's wall-clock tokens/s with the per-epoch validation and checkpoint that
            stackrnn train does (d2l's 10,000 characters make an epoch only 8 batches, so this overhead is large).

Candidates are interleaved round by round; medians are reported.

    .venv/bin/python benchmarks/bench_lm.py [--rounds 5] [--threads N] [--only generate|train] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from stackrnn import LSTM  # noqa: E402
from stackrnn.data.batching import SequentialBatches  # noqa: E402
from stackrnn.data.corpora import embedded_text, preprocess_d2l  # noqa: E402
from stackrnn.data.pipeline import DataConfig  # noqa: E402
from stackrnn.data.tokenizers import Tokenizer  # noqa: E402
from stackrnn.generate import generate  # noqa: E402
from stackrnn.models.lm import LanguageModel, ModelConfig  # noqa: E402
from stackrnn.models.stack_config import StackConfig  # noqa: E402
from stackrnn.optim import TrainConfig  # noqa: E402
from stackrnn.run import RunDir  # noqa: E402
from stackrnn.train import RunConfig, train  # noqa: E402

TIME_MACHINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "timemachine" / "timemachine.txt"
HIDDEN, LAYERS, BATCH, STEPS = 256, 2, 32, 35


def corpus_file(tmp: Path) -> Path:
    """The Time Machine from ../shared when present, else the embedded corpus: first 10,000 characters, d2l style."""
    text = TIME_MACHINE.read_text(encoding="utf-8") if TIME_MACHINE.exists() else embedded_text()
    path = tmp / "d2l.txt"
    path.write_text(preprocess_d2l(text)[:10_000], encoding="utf-8")
    return path


# -- generation ------------------------------------------------------------------------------------------------
def naive_generate(lstm: nn.LSTM, linear: nn.Linear, tok: Tokenizer, prefix: str, n: int, g: torch.Generator) -> str:
    """d2l's predict loop with sampling: torch.nn.LSTM called once per character, the state carried."""
    V = len(tok)
    onehot = lambda i: nn.functional.one_hot(torch.tensor([[i]]), V).float()  # (1, 1, V)  # noqa: E731
    ids = tok.encode(prefix)
    with torch.no_grad():
        out, state = lstm(onehot(ids[0]))
        for i in ids[1:]:
            out, state = lstm(onehot(i), state)
        new = []
        for _ in range(n):
            probs = torch.softmax(linear(out[-1]), dim=-1)  # (1, V)
            i = int(torch.multinomial(probs, 1, generator=g))
            new.append(i)
            out, state = lstm(onehot(i), state)
    return prefix + tok.decode(new)


def bench_generate(text: str, rounds: int, n: int = 500) -> dict:
    tok = Tokenizer.fit(text)
    torch.manual_seed(0)
    model = LanguageModel(len(tok), [LSTM(HIDDEN)] * LAYERS, embedding_size=0).eval()
    lstm = model.rnn.to_torch().eval()
    linear = model.decoder
    prefix = "time traveller "
    # same weights: greedy continuations agree
    g = torch.Generator().manual_seed(0)
    assert generate(model, tok, [prefix], 50, temperature=0) == [_greedy(lstm, linear, tok, prefix, 50)]
    ours, theirs = [], []
    for r in range(rounds + 1):  # round 0 warms up
        for name in (("ours", "theirs") if r % 2 else ("theirs", "ours")):
            t0 = time.perf_counter()
            if name == "ours":
                generate(model, tok, [prefix], n, temperature=1.0, seed=r)
            else:
                naive_generate(lstm, linear, tok, prefix, n, g)
            rate = n / (time.perf_counter() - t0)
            if r:
                (ours if name == "ours" else theirs).append(rate)
    return {"case": "generate chars/s, batch 1", "stackrnn": ours, "baseline": theirs,
            "ratio": statistics.median(ours) / statistics.median(theirs), "target": 5.0}


def _greedy(lstm, linear, tok, prefix, n):
    V = len(tok)
    onehot = lambda i: nn.functional.one_hot(torch.tensor([[i]]), V).float()  # noqa: E731
    with torch.no_grad():
        out, state = lstm(nn.functional.one_hot(torch.tensor(tok.encode(prefix)), V).float().unsqueeze(1))
        new = []
        for _ in range(n):
            i = int(linear(out[-1]).argmax())
            new.append(i)
            out, state = lstm(onehot(i), state)
    return prefix + tok.decode(new)


# -- training --------------------------------------------------------------------------------------------------
def d2l_loop(ids: torch.Tensor, V: int, steps: int, window: int) -> list[float]:
    """A hand-written d2l-style training loop; tokens/s of each `window` steps."""
    torch.manual_seed(0)
    lstm, linear = nn.LSTM(V, HIDDEN, LAYERS), nn.Linear(HIDDEN, V)
    params = [*lstm.parameters(), *linear.parameters()]
    opt = torch.optim.SGD(params, lr=2.0)
    rates, state, done = [], None, 0
    while done < steps:
        batches = SequentialBatches(ids, BATCH, STEPS)
        t0, tokens = time.monotonic(), 0
        for x, y in batches:
            if state is not None:
                state = tuple(s.detach() for s in state)
            out, state = lstm(nn.functional.one_hot(x, V).float(), state)
            loss = nn.functional.cross_entropy(linear(out).reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            tokens += x.numel()
            loss.item()  # d2l accumulates the loss every step
            done += 1
            if done % window == 0:
                rates.append(tokens / (time.monotonic() - t0))
                t0, tokens = time.monotonic(), 0
            if done == steps:
                break
    return rates


def stackrnn_train(path: Path, tmp: Path, steps: int, window: int, r: int) -> tuple[list[float], float]:
    """The logged training tokens/s of each window, and the whole run's tokens per wall-clock second."""
    cfg = RunConfig(
        ModelConfig(stack=StackConfig(hidden_size=HIDDEN, num_layers=LAYERS), embedding_size=0),
        DataConfig(data=str(path), d2l_preprocess=True, valid_fraction=0.1, batch_size=BATCH, num_steps=STEPS),
        TrainConfig(epochs=10_000, max_steps=steps, optimizer="sgd", lr=2.0, clip=1.0, lr_schedule="none",
                    log_every=window, progress=True),
    )
    out = tmp / f"run{r}"
    result = train(cfg, out, progress=True)
    rates = [m["tokens_per_s"] for m in RunDir(out).read_metrics() if m["split"] == "train"]
    return rates, steps * BATCH * STEPS / result.seconds


def bench_train(path: Path, tmp: Path, rounds: int, steps: int = 200, window: int = 50) -> dict:
    text = path.read_text(encoding="utf-8")
    tok = Tokenizer.fit(text[: int(len(text) * 0.9)])
    ids = torch.tensor(tok.encode(text[: int(len(text) * 0.9)]))
    ours, theirs, wall, wall_theirs = [], [], [], []
    for r in range(rounds):
        for name in (("ours", "theirs") if r % 2 else ("theirs", "ours")):
            if name == "ours":
                rates, whole = stackrnn_train(path, tmp, steps, window, r)
                ours += rates[1:]  # the first window includes warm-up
                wall.append(whole)
            else:
                t0 = time.monotonic()
                theirs += d2l_loop(ids, len(tok), steps, window)[1:]
                wall_theirs.append(steps * BATCH * STEPS / (time.monotonic() - t0))
    return {"case": "train tokens/s, d2l config", "stackrnn": ours, "baseline": theirs,
            "ratio": statistics.median(ours) / statistics.median(theirs), "target": 0.95,
            "wall_stackrnn": wall, "wall_baseline": wall_theirs,
            "wall_ratio": statistics.median(wall) / statistics.median(wall_theirs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case (default 5)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--only", choices=("generate", "train"), help="run one case")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"torch {torch.__version__} | cpu ({os.cpu_count()} cores) | threads {torch.get_num_threads()} | load avg {load} | "
          f"corpus {'The Time Machine' if TIME_MACHINE.exists() else 'embedded (../shared absent)'}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = corpus_file(tmp)
        if args.only in (None, "generate"):
            results.append(bench_generate(path.read_text(encoding="utf-8"), args.rounds))
        if args.only in (None, "train"):
            results.append(bench_train(path, tmp, args.rounds))
    for r in results:
        med = lambda xs: statistics.median(xs)  # noqa: E731
        verdict = "ok" if r["ratio"] >= r["target"] else "MISS"
        print(f"{r['case']:<28} stackrnn {med(r['stackrnn']):>10,.0f}  baseline {med(r['baseline']):>10,.0f}  "
              f"ratio {r['ratio']:.2f}  (target >= {r['target']}: {verdict}; medians of {len(r['stackrnn'])} and {len(r['baseline'])})")
        if "wall_ratio" in r:
            print(f"{'  whole run, wall clock':<28} stackrnn {med(r['wall_stackrnn']):>10,.0f}  baseline {med(r['wall_baseline']):>10,.0f}  "
                  f"ratio {r['wall_ratio']:.2f}  (info: stackrnn validates and checkpoints every 8-batch epoch; the baseline does neither)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
