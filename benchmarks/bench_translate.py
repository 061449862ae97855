"""Benchmark: a teacher-forced training step of the translation model, with and without input feeding, beside the
same model written by hand (benchmarks/peer_translate.py's PeerSeq2Seq: torch.nn.LSTM, one decoder call a step).

Input feeding (Luong et al. 2015) joins the last attentional vector h~_{t-1} to the decoder's input at step t, so
step t cannot start before step t-1's attention has finished: the decoder stack runs one step per call. Without
it, Seq2Seq runs the decoder stack over all T target steps in one call (the engine's fused kernel) and the
attention for all steps as one batched product. This prints what input feeding costs in target tokens per
second, on the same batches in the same order.

Sizes: examples/fra-eng.toml's model (embeddings 256, a 2-layer bidirectional LSTM encoder of 256 a direction,
a 4-layer LSTM decoder of 256, general attention, dropout 0.2), batches of 64 pairs with Tatoeba's lengths
(../shared/data/fra_eng/fra.txt when present, else random lengths of 3 to 10 words), 8,000 words a side, Adam,
clipping at 1. Candidates are interleaved round by round; medians are reported.

    .venv/bin/python benchmarks/bench_translate.py [--rounds 5] [--batches 10] [--threads N] [--smoke]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "benchmarks"))
from peer_translate import PeerSeq2Seq, pad  # noqa: E402

from stackrnn.config import from_options  # noqa: E402
from stackrnn.models.seq2seq import Seq2Seq, Seq2SeqConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "fra_eng" / "fra.txt"


def pair_sizes() -> list[tuple[int, int]] | None:
    """(source words + punctuation, target words + <eos>) of every 7th Tatoeba pair, or None without the file."""
    if not DATA.is_file():
        return None
    pairs = [line.split("\t")[:2] for line in DATA.read_text(encoding="utf-8").splitlines()[::7]]
    return [(len(s.split()) + 1, len(t.split()) + 2) for s, t in pairs if len(s.split()) < 10 and len(t.split()) < 10]


def batches(count: int, batch: int, vocab: int, seed: int = 0) -> list[tuple]:
    rng = random.Random(seed)
    known = pair_sizes()  # read once, drawn from per batch
    out = []
    for _ in range(count):
        sizes = ([rng.choice(known) for _ in range(batch)] if known
                 else [(rng.randint(3, 10), rng.randint(3, 12)) for _ in range(batch)])
        source = pad([[rng.randrange(4, vocab) for _ in range(s)] for s, _ in sizes])
        target = pad([[rng.randrange(4, vocab) for _ in range(t)] for _, t in sizes])
        target_in = torch.cat([torch.full((1, batch), 2), target[:-1]])
        out.append((source, torch.tensor([s for s, _ in sizes]), target_in, target))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", type=int, default=10, help="training steps of each candidate per round")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--smoke", action="store_true", help="toy sizes, to check the code runs")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    emb, hidden, vocab, batch = (256, 256, 8000, 64) if not args.smoke else (16, 8, 50, 4)
    if args.smoke:
        args.rounds, args.batches = 1, 2
    data = batches(args.batches, batch, vocab)
    torch.manual_seed(0)

    def ours(feed: bool) -> nn.Module:
        cfg = from_options(Seq2SeqConfig, embedding_size=emb, encoder_hidden_size=hidden, encoder_num_layers=2,
                           decoder_hidden_size=hidden, decoder_num_layers=4, dropout=0.2, input_feed=feed)
        return Seq2Seq.from_config(cfg, vocab, vocab)

    candidates = {"stackrnn, input feeding": ours(True), "stackrnn, no input feeding": ours(False),
                  "hand-written torch.nn, input feeding": PeerSeq2Seq(vocab, vocab, emb, hidden, 2, 4, 0.2)}
    optimizers = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in candidates.items()}
    tokens = sum(int((b[3] != 0).sum()) for b in data)
    rates: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(args.rounds):
        for name, model in candidates.items():
            opt = optimizers[name]
            begun = time.perf_counter()
            for source, source_lengths, target_in, target_out in data:
                out = model(source, source_lengths, target_in)
                logits = out[0] if isinstance(out, tuple) else out
                loss = nn.functional.cross_entropy(logits.flatten(0, 1), target_out.flatten(), ignore_index=0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            rates[name].append(tokens / (time.perf_counter() - begun))
    base = statistics.median(rates["hand-written torch.nn, input feeding"])
    fed = statistics.median(rates["stackrnn, input feeding"])
    print(f"training step, target tokens/s (median of {args.rounds} rounds of {args.batches} batches of {batch}; "
          f"torch threads {torch.get_num_threads()})")
    for name, r in rates.items():
        m = statistics.median(r)
        print(f"  {name:40s} {m:10,.0f}   {m / base:5.2f}x the hand-written model   {m / fed:5.2f}x input feeding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
