"""Decoding a Seq2Seq model: greedy search and beam search, batched and incremental.

Dimension key: S source steps, B sentences, k beam size, V target vocabulary.

Both encode the source batch once, then run one decoder step per output token, carrying the decoder's state
(and the input feed) from step to step; nothing is recomputed over the prefix.

Greedy search takes the most probable token at each step. Beam search keeps the k best partial translations
(hypotheses) of each sentence by total log-probability. Each step scores every continuation of every live
hypothesis and walks the 2k best in order: one ending in <eos> is set aside as finished, any other continues,
until k continue (the 2k are needed because up to k of the best may end; fairseq's scheme). A sentence is
done when k hypotheses have finished; the answer is the finished one with the best score after GNMT's length
penalty (Wu et al. 2016):

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha   (|Y| counts the <eos>)

alpha = 0 compares plain log-probabilities, which favours short translations; GNMT found 0.6 to 0.7 best.
With k = 1 beam search makes exactly greedy search's choices (tested).

Every sentence has its own length limit, `max_length` tokens if given, else 2 * (its source length) + 10; a
hypothesis that reaches it ends there without <eos>. A limit that depends only on the sentence itself keeps a
translation independent of the batch it is decoded in.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .models.seq2seq import Seq2Seq
from .search import GreedyOutputs, length_limits  # noqa: F401 (length_limits: re-exported for api and serve)


def check_search(beam: int, max_length: int | None, length_penalty: float) -> None:
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam: expected an integer >= 1, got {beam!r}")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length: expected an integer >= 1, got {max_length!r}")
    if not length_penalty >= 0:
        raise ValueError(f"length_penalty: expected a number >= 0, got {length_penalty!r}")


def _log_probs(logits: Tensor, pad: int, bos: int) -> Tensor:
    """(N, V) logits -> log-probabilities in float32, with <pad> and <bos> ruled out: never a target in training,
    so never part of a translation (not renormalised: a translation's score stays its model log-probability)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    logp[:, [pad, bos]] = float("-inf")
    return logp


@torch.no_grad()
def greedy_search(model: Seq2Seq, source: Tensor, lengths: Tensor, *, bos: int, eos: int,
                  max_length: int | None = None) -> list[list[int]]:
    """source (S, B) ids, lengths (B,) -> each sentence's translation as target ids, without <bos> and <eos>."""
    limits = length_limits(lengths, max_length)
    mem, state, feed = model.encode(source, lengths)
    batch = source.shape[1]
    tokens = torch.full((batch,), bos, dtype=torch.long, device=source.device)
    outputs = GreedyOutputs(limits)
    for _ in range(max(limits)):
        logits, state, feed, _ = model.step(tokens, mem, state, feed)
        tokens = _log_probs(logits, model.target_pad, bos).argmax(dim=-1)  # (B,)
        outputs.add(tokens.tolist(), eos)
        if outputs.finished:
            break
    return outputs.out


@torch.no_grad()
def beam_search(model: Seq2Seq, source: Tensor, lengths: Tensor, *, beam: int, bos: int, eos: int,
                max_length: int | None = None, length_penalty: float = 0.6) -> list[list[int]]:
    """source (S, B) ids, lengths (B,) -> each sentence's best translation as target ids, without <bos> and <eos>."""
    check_search(beam, max_length, length_penalty)
    limits = length_limits(lengths, max_length)
    device, batch, k = source.device, source.shape[1], beam
    mem, state, feed = model.encode(source, lengths)
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # hypothesis (b, j) is row b * k + j
    mem, state, feed = mem.select(rows), model.select_state(state, rows), feed.index_select(0, rows)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per sentence at the start: the k copies would be duplicates
    tokens = torch.full((batch * k,), bos, dtype=torch.long, device=device)
    prefixes: list[list[int]] = [[] for _ in range(batch * k)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch

    def penalised(logp: float, n: int) -> float:
        return logp / ((5 + n) / 6) ** length_penalty

    for t in range(max(limits)):
        logits, state, feed, _ = model.step(tokens, mem, state, feed)
        logp = _log_probs(logits, model.target_pad, bos)  # (B * k, V)
        vocab = logp.shape[-1]
        candidates = (scores.reshape(-1, 1) + logp).reshape(batch, k * vocab)
        top_scores, top_index = candidates.topk(min(2 * k, k * vocab), dim=1)  # (B, 2k), best first
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        # the next step's hypotheses: for each row, the row it continues, its new token and its score
        parents, next_tokens, next_scores = [], [], []
        for b in range(batch):
            alive: list[tuple[int, int, float]] = []
            if not done[b]:
                for score, index in zip(top_scores[b], top_index[b]):
                    if score == float("-inf"):
                        break
                    row, token = b * k + index // vocab, index % vocab
                    if token == eos or t + 1 >= limits[b]:
                        if len(finished[b]) < k:
                            ended = prefixes[row] + ([] if token == eos else [token])
                            finished[b].append((penalised(score, t + 1), ended))
                    else:
                        alive.append((row, token, score))
                    # as fairseq: an ending ranked below the k-th continuation is not taken
                    if len(alive) == k or len(finished[b]) >= k:
                        break
                done[b] = len(finished[b]) >= k or t + 1 >= limits[b]
            if done[b]:
                alive = []
            # a done sentence (or one with fewer than k continuations) keeps dead rows, which score -inf
            alive += [(b * k, eos, float("-inf"))] * (k - len(alive))
            for row, token, score in alive:
                parents.append(row)
                next_tokens.append(token)
                next_scores.append(score)
        if all(done):
            break
        index = torch.tensor(parents, device=device)
        state, feed = model.select_state(state, index), feed.index_select(0, index)
        tokens = torch.tensor(next_tokens, device=device)
        scores = torch.tensor(next_scores, device=device).reshape(batch, k)
        prefixes = [prefixes[row] + [token] for row, token in zip(parents, next_tokens)]
    return [max(f, key=lambda pair: pair[0])[1] for f in finished]
