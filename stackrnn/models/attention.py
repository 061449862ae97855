"""Global attention over an encoder's outputs: how much each source step matters to one decoder step.

Dimension key: S source steps, B batch, M memory features (the encoder's top-layer output, K * H), Q query
features (the decoder's top-layer output), A the additive scorer's hidden size.

Three scores of a query q (B, Q) against each memory vector m_s (B, M), as Luong et al. (2015) name them:

    dot       score_s = q · m_s                      (needs Q = M)
    general   score_s = q · (W m_s)                  (W: M -> Q, no bias; Luong's "general")
    additive  score_s = v · tanh(W_q q + W_m m_s)    (Bahdanau et al. 2014; Luong's "concat")

optionally scaled (`scaled=True`, dot and general only): score_s / sqrt(Q), as Vaswani et al. (2017) scale theirs,
then weights a = softmax over the valid steps of each sequence (padded steps get exactly zero) and the context
c = sum_s a_s m_s. The part of each score that depends only on the memory (W m_s, W_m m_s) is computed once per
source sentence by `keys`, not once per decoder step: a decoder step then costs one batched product.

Why scale: an LSTM's outputs saturate near +-1 within a few hundred steps, so q · W m_s sums Q terms of size ~1
and reaches +-100 (measured on Tatoeba English-French, 256 units, step 100). A softmax of such scores is one-hot
and passes no gradient to the other source steps, so whichever step wins early (the final punctuation, where a
bidirectional encoder sums up the sentence) wins for good and the attention never learns to align. Dividing by
sqrt(Q) keeps the early scores in the softmax's soft range.

Following OpenNMT, all three scores sit in Luong's framework (the query is the decoder's current output, see
seq2seq.py), so "additive" is Bahdanau's scoring function rather than his whole decoder.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ATTENTIONS = ("none", "dot", "general", "additive")


class Attention(nn.Module):
    """Scores, weights and context of one query per sequence (or one per target step) against a memory.

    Args:
        kind: "dot", "general" or "additive".
        query_size: Q.
        memory_size: M.
        hidden_size: A, the additive scorer's hidden size (default Q); unused otherwise.
        scaled: divide dot and general scores by sqrt(Q) (the additive score has its own learned scale).

    Use: keys = attention.keys(memory) once per source batch, then attention(query, keys, memory, mask) per
    step, or for all target steps at once with a query of shape (T, B, Q).
    """

    def __init__(self, kind: str, query_size: int, memory_size: int, hidden_size: int | None = None, *,
                 scaled: bool = False) -> None:
        super().__init__()
        if kind not in ATTENTIONS[1:]:
            raise ValueError(f"attention: expected one of {', '.join(ATTENTIONS[1:])}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(f"attention: 'dot' needs the decoder's output size to equal the encoder's, got "
                             f"{query_size} and {memory_size}; use 'general' or 'additive', which learn a map between them")
        self.kind = kind
        self.scale = query_size ** -0.5 if scaled and kind != "additive" else None
        if kind == "general":
            self.memory_map = nn.Linear(memory_size, query_size, bias=False)
        elif kind == "additive":
            hidden_size = hidden_size or query_size
            self.memory_map = nn.Linear(memory_size, hidden_size, bias=False)
            self.query_map = nn.Linear(query_size, hidden_size)
            self.score = nn.Linear(hidden_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """The query-independent part of the scores: (S, B, M) -> (S, B, Q) for dot and general, (S, B, A) for additive."""
        return memory if self.kind == "dot" else self.memory_map(memory)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, Q) or (T, B, Q); keys from `keys(memory)`; memory (S, B, M); mask (S, B), True at valid steps.

        Returns context (B, M) or (T, B, M), and weights (S, B) or (T, S, B), summing to 1 over S.
        """
        steps = query.dim() == 3
        q = query if steps else query.unsqueeze(0)  # (T, B, Q)
        if self.kind == "additive":
            # (T, 1, B, A) + (1, S, B, A) -> (T, S, B)
            scores = self.score(torch.tanh(self.query_map(q).unsqueeze(1) + keys.unsqueeze(0))).squeeze(-1)
        else:
            scores = torch.einsum("tbq,sbq->tsb", q, keys)
            if self.scale is not None:
                scores = scores * self.scale
        scores = scores.masked_fill(~mask.unsqueeze(0), float("-inf"))
        weights = torch.softmax(scores, dim=1)  # (T, S, B)
        context = torch.einsum("tsb,sbm->tbm", weights, memory)
        return (context, weights) if steps else (context.squeeze(0), weights.squeeze(0))

    def extra_repr(self) -> str:
        return self.kind + (", scaled" if self.scale is not None else "")
