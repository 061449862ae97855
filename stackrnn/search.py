"""The bookkeeping of batched greedy search, in plain Python: how long each translation may grow, which sentences
are finished, and the tokens each has produced. decode.greedy_search (torch) and the torch-free runtime (numpy)
both choose tokens their own way and record them here, so the two cannot drift apart on when a sentence ends.
"""

from __future__ import annotations

from typing import Sequence


def length_limits(lengths: Sequence[int], max_length: int | None) -> list[int]:
    """The most tokens each sentence's translation may have (before <eos>): max_length, or twice the source's
    length plus 10. `lengths`: source lengths, a list or a tensor / array of them."""
    lengths = lengths.tolist() if hasattr(lengths, "tolist") else lengths
    return [max_length if max_length is not None else 2 * n + 10 for n in lengths]


class GreedyOutputs:
    """What a batch of greedy searches has produced so far.

    out[b]: sentence b's tokens, without <bos> and <eos>. done[b]: whether it produced <eos> or reached its limit.
    """

    def __init__(self, limits: list[int]) -> None:
        self.limits = limits
        self.out: list[list[int]] = [[] for _ in limits]
        self.done = [False] * len(limits)

    def add(self, tokens: list[int], eos: int) -> list[int]:
        """Record one step's chosen token of every sentence (finished ones' are ignored); returns the sentences
        that took this step, whose step outputs (attention, say) belong to their translation."""
        took = []
        for b, token in enumerate(tokens):
            if self.done[b]:
                continue
            took.append(b)
            if token == eos:
                self.done[b] = True
            else:
                self.out[b].append(token)
                self.done[b] = len(self.out[b]) >= self.limits[b]
        return took

    @property
    def finished(self) -> bool:
        return all(self.done)
