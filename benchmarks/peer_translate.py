"""Peer: the same translation model written by hand in plain PyTorch, beside stackrnn, on stackrnn's own split,
for the same training time, scored by the same sacrebleu call.

    python benchmarks/peer_translate.py --minutes 40 --data ../shared/data/fra_eng/fra.txt
    python benchmarks/peer_translate.py --minutes 0.2 --max-pairs 3000 --smoke      # a smoke run (the tests run it)

One after the other, never at the same time:
  1. stackrnn: `stackrnn train --config CONFIG --data DATA --max-minutes M` (a subprocess), then `stackrnn eval RUN
     --split test --json` greedy and with beam 5.
  2. the peer: the model below, trained for the same M minutes of wall clock (its validation passes count, as
     stackrnn's do), best weights by validation BLEU (greedy), then greedy search over the test pairs.
The peer reads stackrnn's run for everything that is data: the prepared sentences (stackrnn's d2l normalisation,
the run's max_length), the train/valid/test split recorded in split.json and the two vocabularies, so the two
differ only in model code and training loop. Then one table: both greedy test BLEUs side by side, stackrnn's beam
5, and each one's training steps, target tokens per second and minutes.

The peer is what a user would write from Luong et al. (2015) with torch.nn and nothing else: a bidirectional
torch.nn.LSTM encoder over packed sequences, a torch.nn.LSTM decoder called one step at a time with input feeding
(the last attentional vector joins the next step's input), "general" attention over the encoder outputs with
padded steps masked, h~ = tanh(W_c [c; h]), a linear output layer. Its decoder starts from a linear map of the
encoder's top-layer final states (one per decoder layer). Random batches of --batch-size pairs, Adam, gradient
norm clipped at 1, dropout on the embeddings, between layers and before the output layer.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
# data and scoring only: the same sentences, split and BLEU call as stackrnn's run; no model or training code
from stackrnn.data.parallel import read_parallel  # noqa: E402
from stackrnn.evaluate import translation_metrics  # noqa: E402

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


class PeerSeq2Seq(nn.Module):
    """Encoder (S, B) -> memory (S, B, 2H); decoder step: previous token (B,), feed (B, H) -> h~ (B, H)."""

    def __init__(self, source_vocab: int, target_vocab: int, embedding: int, hidden: int, encoder_layers: int,
                 decoder_layers: int, dropout: float) -> None:
        super().__init__()
        self.source_embedding = nn.Embedding(source_vocab, embedding, padding_idx=0)
        self.target_embedding = nn.Embedding(target_vocab, embedding, padding_idx=0)
        self.encoder = nn.LSTM(embedding, hidden, encoder_layers, bidirectional=True, dropout=dropout)
        self.decoder = nn.LSTM(embedding + hidden, hidden, decoder_layers, dropout=dropout)
        self.init_h = nn.Linear(2 * hidden, decoder_layers * hidden)
        self.init_c = nn.Linear(2 * hidden, decoder_layers * hidden)
        self.key = nn.Linear(2 * hidden, hidden, bias=False)  # "general": score = h_t . W m_s
        self.combine = nn.Linear(3 * hidden, hidden, bias=False)
        self.output = nn.Linear(hidden, target_vocab)
        self.drop = nn.Dropout(dropout)
        self.layers, self.hidden = decoder_layers, hidden

    def encode(self, source: Tensor, lengths: Tensor):
        x = self.drop(self.source_embedding(source))
        packed, (h, c) = self.encoder(pack_padded_sequence(x, lengths, enforce_sorted=False))
        memory, _ = pad_packed_sequence(packed, total_length=source.shape[0])  # (S, B, 2H)
        batch = source.shape[1]
        top_h, top_c = torch.cat([h[-2], h[-1]], -1), torch.cat([c[-2], c[-1]], -1)  # (B, 2H)
        shape = (batch, self.layers, self.hidden)
        h0 = torch.tanh(self.init_h(top_h)).view(shape).transpose(0, 1).contiguous()
        c0 = self.init_c(top_c).view(shape).transpose(0, 1).contiguous()
        mask = torch.arange(source.shape[0])[:, None] < lengths[None, :]  # (S, B)
        return memory, self.key(memory), mask, (h0, c0), memory.new_zeros(batch, self.hidden)

    def step(self, tokens: Tensor, feed: Tensor, state, memory: Tensor, keys: Tensor, mask: Tensor):
        x = torch.cat([self.drop(self.target_embedding(tokens)), feed], -1)
        out, state = self.decoder(x.unsqueeze(0), state)
        query = out[0]  # (B, H)
        scores = torch.einsum("bh,sbh->sb", query, keys).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=0)
        context = torch.einsum("sb,sbm->bm", weights, memory)
        return torch.tanh(self.combine(torch.cat([context, query], -1))), state

    def forward(self, source: Tensor, lengths: Tensor, target_in: Tensor) -> Tensor:
        memory, keys, mask, state, feed = self.encode(source, lengths)
        vectors = []
        for t in range(target_in.shape[0]):
            feed, state = self.step(target_in[t], feed, state, memory, keys, mask)
            vectors.append(feed)
        return self.output(self.drop(torch.stack(vectors)))  # (T, B, V)

    @torch.no_grad()
    def greedy(self, source: Tensor, lengths: Tensor, bos: int, eos: int, max_length: int) -> list[list[int]]:
        memory, keys, mask, state, feed = self.encode(source, lengths)
        batch = source.shape[1]
        tokens = torch.full((batch,), bos, dtype=torch.long)
        out, done = [], torch.zeros(batch, dtype=torch.bool)
        for _ in range(max_length):
            feed, state = self.step(tokens, feed, state, memory, keys, mask)
            tokens = self.output(feed).argmax(-1)
            out.append(tokens)
            done |= tokens == eos
            if done.all():
                break
        rows = torch.stack(out, 1).tolist()
        return [row[: row.index(eos)] if eos in row else row for row in rows]


def pad(seqs: list[list[int]]) -> Tensor:
    """Lists of ids -> (L, N), right-padded with 0."""
    out = torch.zeros(max(len(s) for s in seqs), len(seqs), dtype=torch.long)
    for j, s in enumerate(seqs):
        out[: len(s), j] = torch.tensor(s)
    return out


def read_run_data(run: Path, data: str, max_length: int | None):
    """stackrnn's prepared pairs, its split (split.json's held-out line numbers) and its vocabularies."""
    text = read_parallel(data, max_length=max_length)
    split = json.loads((run / "split.json").read_text())
    line_to_pair = {line: i for i, line in enumerate(text.lines)}
    held = {s: [line_to_pair[line] for line in split[s]] for s in ("valid", "test")}
    taken = set(held["valid"]) | set(held["test"])
    parts = {"train": [i for i in range(len(text)) if i not in taken], **held}
    vocab = {side: json.loads((run / f"{side}_vocab.json").read_text())["itos"] for side in ("source", "target")}
    for side in vocab:
        assert vocab[side][0] == PAD, f"{side} vocabulary: the peer pads with id 0"
    stoi = {side: {w: i for i, w in enumerate(v)} for side, v in vocab.items()}

    def ids(sentence: str, side: str, extra: list[int]) -> list[int]:
        get, unk = stoi[side].get, stoi[side][UNK]
        return [get(w, unk) for w in sentence.split()] + extra

    eos = stoi["target"][EOS]
    sets = {s: ([ids(text.source[i], "source", []) for i in idx], [ids(text.target[i], "target", [eos]) for i in idx],
                [text.target[i] for i in idx]) for s, idx in parts.items()}
    return sets, vocab, stoi


def peer_translate(model: PeerSeq2Seq, sources: list[list[int]], stoi: dict, itos: list[str], batch: int = 256
                   ) -> list[str]:
    model.eval()
    out = []
    for k in range(0, len(sources), batch):
        chunk = sources[k : k + batch]
        lengths = torch.tensor([len(s) for s in chunk])
        hyps = model.greedy(pad(chunk), lengths, stoi[BOS], stoi[EOS], max_length=2 * int(lengths.max()) + 10)
        out += [" ".join(itos[i] for i in h) for h in hyps]
    model.train()
    return out


def train_peer(run: Path, args) -> dict:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    sets, vocab, stoi = read_run_data(run, args.data, args.max_length)
    model = PeerSeq2Seq(len(vocab["source"]), len(vocab["target"]), args.embedding, args.hidden, args.encoder_layers,
                        args.decoder_layers, args.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=0)
    src, tgt, _ = sets["train"]
    bos = stoi["target"][BOS]
    begun = time.perf_counter()
    deadline = begun + args.minutes * 60
    best, best_state, steps, tokens, epoch, eval_seconds = -1.0, None, 0, 0, 0, 0.0

    def validate() -> None:
        nonlocal best, best_state, eval_seconds
        t0 = time.perf_counter()
        hyps = peer_translate(model, sets["valid"][0], stoi["target"], vocab["target"])
        bleu = translation_metrics(hyps, sets["valid"][2])["bleu"]
        eval_seconds += time.perf_counter() - t0
        print(f"peer: epoch {epoch} step {steps} valid bleu {bleu:.2f} ({(time.perf_counter() - begun) / 60:.1f} min)",
              flush=True)
        if bleu > best:
            best, best_state = bleu, copy.deepcopy(model.state_dict())

    # the closing validation pass must end by the deadline too: stop training when the last pass's time is left
    last_eval = 0.0
    while time.perf_counter() + last_eval < deadline:
        order = list(range(len(src)))
        rng.shuffle(order)
        for k in range(0, len(order), args.batch_size):
            if time.perf_counter() + last_eval >= deadline:
                break
            chunk = order[k : k + args.batch_size]
            source = pad([src[i] for i in chunk])
            lengths = torch.tensor([len(src[i]) for i in chunk])
            target_out = pad([tgt[i] for i in chunk])
            target_in = torch.cat([torch.full((1, len(chunk)), bos), target_out[:-1]])
            target_in = target_in.masked_fill(target_in == stoi["target"][EOS], 0)  # <eos> is never an input
            logits = model(source, lengths, target_in)
            loss = loss_fn(logits.flatten(0, 1), target_out.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            steps += 1
            tokens += int((target_out != 0).sum())
        else:
            epoch += 1
        before = eval_seconds
        validate()
        last_eval = eval_seconds - before
    train_seconds = time.perf_counter() - begun
    model.load_state_dict(best_state)
    hyps = peer_translate(model, sets["test"][0], stoi["target"], vocab["target"])
    metrics = translation_metrics(hyps, sets["test"][2])
    return {"bleu": metrics["bleu"], "exact_match": metrics["exact_match"], "signature": metrics["bleu_signature"],
            "steps": steps, "tokens_per_s": tokens / max(train_seconds - eval_seconds, 1e-9),
            "minutes": train_seconds / 60, "valid_bleu": best,
            "examples": list(zip([" ".join(vocab["source"][i] for i in s) for s in sets["test"][0][:5]], hyps[:5]))}


def train_stackrnn(out: Path, args) -> dict:
    cli = [sys.executable, "-m", "stackrnn.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    train = [*cli, "train", "--config", args.config, "--data", args.data, "--out", str(out),
             "--max-minutes", str(args.minutes), "--seed", str(args.seed), "--no-progress"]
    if args.max_pairs:
        train += ["--max-pairs", str(args.max_pairs)]
    if args.epochs:
        train += ["--epochs", str(args.epochs)]
    if args.threads:
        train += ["--threads", str(args.threads)]
    if args.smoke:
        train += ["--embedding-size", "16", "--encoder-hidden-size", "8", "--encoder-num-layers", "1",
                  "--decoder-hidden-size", "16", "--decoder-num-layers", "2", "--no-decoder-residual"]
    begun = time.perf_counter()
    subprocess.run(train, check=True, env=env)
    minutes = (time.perf_counter() - begun) / 60
    results = {"minutes": minutes}
    for beam in (1, 5):
        done = subprocess.run([*cli, "eval", str(out), "--split", "test", "--beam", str(beam), "--json"], check=True,
                              env=env, capture_output=True, text=True)
        results[f"beam{beam}"] = json.loads(done.stdout)
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    trained = [r for r in log if r.get("split") == "train"]
    results["steps"] = max((r.get("step", 0) for r in log), default=0)
    results["tokens_per_s"] = trained[-1].get("tokens_per_s") if trained else None
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "examples" / "fra-eng.toml"), help="stackrnn's config")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fra_eng" / "fra.txt"))
    p.add_argument("--minutes", type=float, default=40.0, help="training time of each, wall clock")
    p.add_argument("--max-length", type=int, default=None, help="the config's data.max_length (read from it)")
    p.add_argument("--max-pairs", type=int, default=None, help="use the first N pairs only (smoke runs)")
    p.add_argument("--epochs", type=int, default=None, help="stackrnn's epochs (default: the config's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads of both (default: torch's)")
    p.add_argument("--out", default=None, help="where stackrnn's run goes (default: a temporary directory)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    # the peer's model: the hand-written reference
    p.add_argument("--embedding", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--encoder-layers", type=int, default=2)
    p.add_argument("--decoder-layers", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--smoke", action="store_true", help="tiny models (a test that the script runs)")
    args = p.parse_args(argv)
    if args.smoke:
        args.embedding = args.hidden = 16
        args.encoder_layers, args.decoder_layers = 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    import tomllib

    with open(args.config, "rb") as f:
        config = tomllib.load(f)
    args.max_length = args.max_length or config.get("data", {}).get("max_length")
    tmp = tempfile.TemporaryDirectory() if args.out is None else None
    out = Path(args.out or tmp.name) / "stackrnn"
    ours = train_stackrnn(out, args)
    peer = train_peer(out, args)
    print()
    print(f"test pairs: {ours['beam1']['pairs']:,}   {ours['beam1']['bleu_signature']}")
    print("| model | training minutes | steps | target tokens/s | test BLEU greedy | test BLEU beam 5 |")
    print("|---|---|---|---|---|---|")
    tps = ours["tokens_per_s"]
    print(f"| stackrnn ({Path(args.config).name}) | {ours['minutes']:.1f} | {ours['steps']:,} | "
          f"{'-' if tps is None else f'{tps:,.0f}'} | {ours['beam1']['bleu']:.2f} | {ours['beam5']['bleu']:.2f} |")
    print(f"| hand-written torch.nn | {peer['minutes']:.1f} | {peer['steps']:,} | {peer['tokens_per_s']:,.0f} | "
          f"{peer['bleu']:.2f} | - |")
    print(f"stackrnn greedy / peer greedy: {ours['beam1']['bleu'] / max(peer['bleu'], 1e-9):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"stackrnn": ours, "peer": peer, "minutes": args.minutes}, indent=1))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
