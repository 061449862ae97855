"""Benchmark: training the speech model (SpeechRecognizer) against the same model written by hand with torch.nn.

Both: utterances of AN4's Sphinx features (13 cepstra, 100 frames a second; ../shared/data/an4_mfcc when present,
else random frames of AN4's lengths), normalised per utterance, padded batches sorted into buckets of similar
length; frames stacked by 3; a 3-layer bidirectional LSTM of 128 units a direction; a linear layer; log-softmax;
torch's CTC loss (blank 0); Adam; gradient clipping at 1. The hand-written model packs the batch
(pack_padded_sequence) into one torch.nn.LSTM(num_layers=3, bidirectional=True) call, as a PyTorch user would.

  train  training frames (input frames, before stacking) per second, over the same batches in the same order.
         Target: SpeechRecognizer >= 0.95x the hand-written model.

Candidates are interleaved round by round; medians are reported.

    .venv/bin/python benchmarks/bench_speech.py [--rounds 5] [--batches 20] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from stackrnn import LSTM  # noqa: E402
from stackrnn.data.audio import normalise, read_mfc  # noqa: E402
from stackrnn.models.speech import SpeechRecognizer, join_frames  # noqa: E402

AN4 = Path(__file__).resolve().parents[2] / "shared" / "data" / "an4_mfcc"
HIDDEN, LAYERS, STACK, VOCAB, BATCH = 128, 3, 3, 28, 16


class HandWritten(nn.Module):
    """The same model with torch.nn: stacked frames -> nn.LSTM over a packed batch -> linear -> log-softmax."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size * STACK, HIDDEN, LAYERS, bidirectional=True)
        self.head = nn.Linear(2 * HIDDEN, VOCAB)
        self.ctc = nn.CTCLoss(blank=0, zero_infinity=True)

    def forward(self, x, lengths, targets, target_lengths):
        x = join_frames(x, STACK)
        steps = (lengths + STACK - 1) // STACK
        out, _ = self.lstm(pack_padded_sequence(x, steps, enforce_sorted=False))
        out, _ = pad_packed_sequence(out)
        log_probs = self.head(out).log_softmax(-1)
        return self.ctc(log_probs, targets, steps, target_lengths)


def utterances(n: int) -> list[torch.Tensor]:
    files = sorted((AN4 / "feat").rglob("*.mfc"))[:n] if AN4.is_dir() else []
    if files:
        return [torch.from_numpy(normalise(read_mfc(f))) for f in files]
    rng = np.random.default_rng(0)
    return [torch.randn(int(rng.integers(100, 700)), 13) for _ in range(n)]


def make_batches(feats: list[torch.Tensor], count: int) -> list[tuple]:
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]))
    chunks = [order[i:i + BATCH] for i in range(0, len(order), BATCH)][:count]
    rng = np.random.default_rng(1)
    out = []
    for idx in chunks:
        x = pad_sequence([feats[i] for i in idx])
        lengths = torch.tensor([len(feats[i]) for i in idx])
        target_lengths = torch.tensor([max(1, int(n) // 30) for n in lengths])  # about AN4's characters per frame
        targets = torch.from_numpy(rng.integers(1, VOCAB, (len(idx), int(target_lengths.max()))))
        out.append((x, lengths, targets, target_lengths))
    return out


def train_pass(model: nn.Module, batches, step) -> float:
    """Seconds for one pass over the batches: forward, backward, clip, Adam step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x, lengths, targets, target_lengths in batches:
        loss = step(model, x, lengths, targets, target_lengths)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    parser.add_argument("--batches", type=int, default=20, help="batches per round")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batches = make_batches(utterances(args.batches * BATCH), args.batches)
    frames = sum(int(b[1].sum()) for b in batches)
    ours = SpeechRecognizer(13, VOCAB, [LSTM(HIDDEN, bidirectional=True)] * LAYERS, frontend="stack", stack_frames=STACK)
    theirs = HandWritten(13)
    candidates = {
        "stackrnn": (ours, lambda m, x, l, y, yl: m(x, l, y, yl)[1]),
        "torch.nn": (theirs, lambda m, x, l, y, yl: m(x, l, y, yl)),
    }
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, (model, step) in candidates.items():
            times[name].append(train_pass(model, batches, step))
    rates = {name: frames / statistics.median(t) for name, t in times.items()}
    result = {"frames": frames, "threads": torch.get_num_threads(), "source": "an4" if AN4.is_dir() else "random",
              "frames_per_s": rates, "ratio": rates["stackrnn"] / rates["torch.nn"]}
    print(f"train: {frames:,} frames a round, {torch.get_num_threads()} threads, median of {args.rounds} rounds")
    for name, rate in rates.items():
        print(f"  {name:<9} {rate:10,.0f} frames/s")
    print(f"  ratio     {result['ratio']:10.3f}  (target >= 0.95)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
