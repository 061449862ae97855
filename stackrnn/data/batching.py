"""Language-model batches from one long stream of token ids. Time-major: every batch is (x, y), each (T, B),
with y the next token of x at every position.

Dimension key: N tokens in the corpus, B batch (streams), T time steps of a batch, R rows (steps) per stream.

Two ways to cut a corpus, as d2l.ai teaches them:

- `SequentialBatches` (truncated BPTT, Zaremba et al. / AWD-LSTM). The corpus is cut into B contiguous streams,
  one per batch column, and the batches walk down the streams together, so column b of batch k+1 continues
  column b of batch k. The model's final state of one batch is then the right initial state of the next: carry
  it, detached, and the model sees context older than T while gradients stop at the batch boundary.
- `RandomBatches` (d2l's random sampling). The corpus is cut into non-overlapping windows of T + 1 tokens taken
  in random order; neighbouring batches are unrelated, so every batch starts from a zero state.

Both can start at a batch index (`iter_from(start)`) so a run resumed mid-epoch sees exactly the batches the
uninterrupted run would have seen; all randomness comes from an explicit seed.
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Iterator

import torch

from stackrnn.errors import InputError

Batch = tuple[torch.Tensor, torch.Tensor]  # (x, y), each (T, B) int64


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's data order: a function of (run seed, epoch) only, so an epoch can be replayed
    exactly on resume; kept below 2**63, the most torch.Generator.manual_seed takes."""
    return (seed * 100_003 + epoch) % 2**63


def _as_ids(ids) -> torch.Tensor:
    """A 1-D int64 tensor of token ids (N,) from a tensor or a list."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(f"token ids must be 1-D (N,), got shape {tuple(ids.shape)}")
    return ids


def _check_positive(**kwargs: int) -> None:
    for name, value in kwargs.items():
        if not isinstance(value, numbers.Integral) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}: pass a positive {name}")


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a token stream into `batch_size` contiguous streams, one per column.

    Inputs: ids (N,). Outputs: (N // B, B), column b = ids[b*R : (b+1)*R] with R = N // B. The N % B tokens
    that do not fill a row are dropped from the end.
    """
    ids = _as_ids(ids)
    _check_positive(batch_size=batch_size)
    rows = ids.numel() // batch_size
    if rows < 1:
        raise InputError(
            f"{ids.numel()} tokens are too few for batch_size {batch_size}: need at least {batch_size} tokens; "
            "use a smaller batch size or more text"
        )
    return ids[: rows * batch_size].view(batch_size, rows).t().contiguous()  # (R, B)


class Replayable:
    """One epoch's batches, replayable from any index (for exact resume): a subclass gives __len__ and _from(start),
    the batches from index `start` on."""

    def __iter__(self) -> Iterator:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator:
        """The batches from index `start` on (0 <= start <= len(self)), to resume an epoch part-way."""
        if not 0 <= start <= len(self):
            raise InputError(f"batch index {start} is outside this epoch of {len(self)} batches: pass 0..{len(self)}")
        return self._from(start)

    def __len__(self) -> int:
        raise NotImplementedError

    def _from(self, start: int) -> Iterator:
        raise NotImplementedError


class SequentialBatches(Replayable):
    """Consecutive (x, y) windows down B parallel streams, for truncated backpropagation through time.

    Args:
        ids: token ids (N,).
        batch_size: B, the number of streams.
        num_steps: T, the window length (the BPTT length).
        offset: drop the first `offset` tokens before cutting streams. d2l draws it at random in
            [0, num_steps) each epoch so the windows do not always start at the same tokens.
        variable_bptt: AWD-LSTM's variable window length (see `window_lengths`); x.shape[0] then varies and
            a trainer may scale its learning rate by T / num_steps, as AWD-LSTM does.
        seed: seeds the variable lengths.

    Outputs (iterating): x, y of shape (T, B) with y[t] the token after x[t]. The last window of an epoch may
    be shorter (the streams run out), so weight per-batch losses by x.numel() when averaging.

    Attributes:
        data: the streams, (R, B).
        lengths: T of every window, in order; len(self) == len(lengths).
    """

    def __init__(
        self,
        ids: torch.Tensor,
        batch_size: int,
        num_steps: int,
        *,
        offset: int = 0,
        variable_bptt: bool = False,
        seed: int = 0,
    ):
        ids = _as_ids(ids)
        _check_positive(batch_size=batch_size, num_steps=num_steps)
        if not isinstance(offset, numbers.Integral) or not 0 <= offset < max(1, ids.numel()):
            raise InputError(f"offset must be in [0, {ids.numel()}), got {offset!r}: d2l uses [0, num_steps)")
        needed = offset + 2 * batch_size  # every stream needs an input and the token after it
        if ids.numel() < needed:
            raise InputError(
                f"{ids.numel()} tokens are too few for batch_size {batch_size}: need at least {needed} tokens; "
                "use a smaller batch size or more text"
            )
        self.data = batchify(ids[offset:], batch_size)  # (R, B)
        self.batch_size, self.num_steps = batch_size, num_steps
        self.variable_bptt, self.seed = variable_bptt, seed
        # The whole schedule is fixed here, from the seed alone: len() is exact and resuming at batch k
        # replays the same windows as an uninterrupted epoch.
        self.lengths = window_lengths(self.data.shape[0] - 1, num_steps, variable=variable_bptt, seed=seed)
        self._starts = [0]
        for n in self.lengths[:-1]:
            self._starts.append(self._starts[-1] + n)

    def __len__(self) -> int:
        return len(self.lengths)

    def _from(self, start: int) -> Iterator[Batch]:
        for i, n in zip(self._starts[start:], self.lengths[start:]):
            yield self.data[i : i + n], self.data[i + 1 : i + 1 + n]  # (T, B), (T, B)


def window_lengths(total: int, num_steps: int, *, variable: bool = False, seed: int = 0) -> list[int]:
    """Lengths of consecutive windows covering `total` positions exactly (the last one may be shorter).

    Fixed: num_steps each. Variable (AWD-LSTM, Merity et al. 2017): for each window, a base of num_steps with
    probability 0.95, else num_steps / 2 (so windows start at ever-different positions across epochs), then a
    length drawn from N(base, 5), at least min(5, num_steps) and at most num_steps + 20 (AWD-LSTM has no cap;
    this one bounds memory). Drawn with `random.Random(seed)`, so the lengths are a function of the seed alone.
    """
    if total <= 0:
        return []
    if not variable:
        full, rest = divmod(total, num_steps)
        return [num_steps] * full + ([rest] if rest else [])
    rng = random.Random(seed)
    shortest, longest = min(5, num_steps), num_steps + 20
    lengths, covered = [], 0
    while covered < total:
        base = num_steps if rng.random() < 0.95 else num_steps / 2
        n = min(max(shortest, int(rng.gauss(base, 5))), longest, total - covered)
        lengths.append(n)
        covered += n
    return lengths


class RandomBatches(Replayable):
    """(x, y) windows taken from the corpus in random order (d2l's random sampling); no state links batches.

    The corpus, after dropping its first `offset` tokens, is cut into non-overlapping windows of num_steps
    tokens (plus the one after each for y); their order is shuffled and each batch takes B of them. Windows
    that do not fill a last batch are left out of this epoch; a fresh seed (and offset) next epoch shifts them.

    Args:
        ids: token ids (N,).
        batch_size: B.
        num_steps: T.
        seed: seeds a torch.Generator that draws the offset (when not given) and the order. Pass a different
            seed each epoch (e.g. base_seed + epoch) for fresh batches that are still reproducible.
        offset: tokens dropped from the start; None draws one in [0, num_steps) as d2l does.

    Outputs (iterating): x, y of shape (T, B).
    """

    def __init__(
        self,
        ids: torch.Tensor,
        batch_size: int,
        num_steps: int,
        *,
        seed: int = 0,
        offset: int | None = None,
    ):
        ids = _as_ids(ids)
        _check_positive(batch_size=batch_size, num_steps=num_steps)
        if offset is not None and (not isinstance(offset, numbers.Integral) or offset < 0):
            raise InputError(f"offset must be an integer >= 0, got {offset!r}: d2l uses [0, num_steps)")
        generator = torch.Generator().manual_seed(seed)
        # Ask for enough text for the largest offset, so whether it fits does not depend on the seed.
        largest_offset = num_steps - 1 if offset is None else offset
        needed = largest_offset + batch_size * num_steps + 1
        if ids.numel() < needed:
            raise InputError(
                f"{ids.numel()} tokens are too few for batch_size {batch_size} x num_steps {num_steps}: need at "
                f"least {needed} tokens; use a smaller batch size or num_steps, or more text"
            )
        if offset is None:
            offset = int(torch.randint(num_steps, (), generator=generator))
        self.ids, self.batch_size, self.num_steps, self.offset = ids, batch_size, num_steps, int(offset)
        num_windows = (ids.numel() - offset - 1) // num_steps
        order = torch.randperm(num_windows, generator=generator)
        num_batches = num_windows // batch_size
        # starts[k] holds the first token of each window of batch k.
        self.starts = (offset + num_steps * order[: num_batches * batch_size]).view(num_batches, batch_size)  # (K, B)

    def __len__(self) -> int:
        return self.starts.shape[0]

    def _from(self, start: int) -> Iterator[Batch]:
        steps = torch.arange(self.num_steps + 1)  # (T+1,)
        for starts in self.starts[start:]:
            window = self.ids[steps[:, None] + starts[None, :]]  # (T+1, B)
            yield window[:-1], window[1:]  # (T, B), (T, B)


def unigram_perplexity(train_ids, eval_ids, vocab_size: int) -> float:
    """Perplexity on `eval_ids` of the add-one-smoothed unigram model fit on `train_ids`.

    A model that has learnt anything beyond token frequencies beats this; a language model worse than it is
    broken. p(w) = (count(w) + 1) / (N + V); perplexity = exp(mean over eval of -log p(w)).
    """
    train_ids, eval_ids = _as_ids(train_ids), _as_ids(eval_ids)
    if eval_ids.numel() == 0:
        raise ValueError("eval_ids is empty: perplexity needs at least one token")
    for name, t in (("train_ids", train_ids), ("eval_ids", eval_ids)):
        if t.numel() and not (0 <= int(t.min()) and int(t.max()) < vocab_size):
            raise ValueError(f"{name} holds ids outside [0, {vocab_size})")
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0  # (V,)
    log_p = counts.log() - math.log(train_ids.numel() + vocab_size)  # (V,)
    return math.exp(-log_p[eval_ids].mean().item())
