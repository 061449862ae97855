"""Length-bucketed, padded batches of labelled token sequences, for classification. Time-major, like the
language-model batches: x is (T, B).

Dimension key: N examples, B batch, T longest sequence of a batch.

Texts differ in length (SST: 2 to 56 words; IMDB: 10 to 2,500), and a batch is as long as its longest text, so
a random batch spends most of its steps on padding. Batching texts of similar length wastes little, but sorted
batches would always meet in the same order and with the same neighbours. The usual compromise (torchtext's
BucketIterator, fairseq): shuffle, cut into chunks of `bucket_batches` batches, sort each chunk by length, cut it
into batches, and shuffle the order of the batches.

The schedule is fixed when the object is made, from the seed alone, so `iter_from(k)` resumes an epoch at
batch k exactly, without building the k batches it skips.
"""

from __future__ import annotations

import numbers
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from ..errors import InputError
from .batching import Replayable


class LabelledBatch(NamedTuple):
    """One batch of classification examples.

    Attributes:
        x: token ids (T, B) int64; column b holds example b, padded on the right (the bottom) with pad_id.
        lengths: (B,) int64, the number of real tokens of each column (>= 1).
        y: class ids (B,) int64.
        index: (B,) int64, the positions of these examples in the `sequences` given, so that predictions
            can be put back in input order: `out[batch.index] = predictions`.
    """

    x: Tensor
    lengths: Tensor
    y: Tensor
    index: Tensor


class BucketBatches(Replayable):
    """Padded batches of sequences of similar length, every example once per epoch.

    Args:
        sequences: token ids of each example (lists or 1-D tensors), none empty.
        labels: class id of each example.
        batch_size: B; the last batch may be smaller.
        shuffle: training order: a seeded shuffle, then sort within chunks of bucket_batches * batch_size
            examples, then a shuffled batch order (see the module docstring). Without shuffle (evaluation):
            all examples sorted by length, shortest first (ties in input order), batches in that order.
        seed: seeds the shuffle with a torch.Generator; the order is a function of the seed alone.
        pad_id: the token id padding fills x with.
        bucket_batches: how many batches share one sort; larger wastes less on padding, smaller is more random.

    Outputs (iterating): LabelledBatch(x (T, B), lengths (B,), y (B,), index (B,)).

    Attributes:
        batches: the example indices of every batch, in order; len(self) == len(batches).
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        labels: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        pad_id: int = 0,
        bucket_batches: int = 50,
    ):
        for name, value in (("batch_size", batch_size), ("bucket_batches", bucket_batches)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}: pass a positive {name}")
        if isinstance(pad_id, bool) or not isinstance(pad_id, numbers.Integral):
            raise InputError(f"pad_id must be a token id, got {pad_id!r}: pass the tokenizer's pad_id")
        if len(sequences) != len(labels):
            raise InputError(f"{len(sequences)} sequences but {len(labels)} labels: give one label per sequence")
        if not sequences:
            raise InputError("no examples to batch: give at least one sequence")
        lengths = [len(seq) for seq in sequences]
        empty = next((i for i, n in enumerate(lengths) if n == 0), None)
        if empty is not None:
            raise InputError(f"sequence {empty} is empty: every example needs at least one token (encode an empty "
                             "text as [unk_id])")
        self.sequences, self.labels, self.lengths = sequences, labels, lengths
        self.batch_size, self.shuffle, self.seed, self.pad_id = batch_size, shuffle, seed, pad_id
        self.batches: list[list[int]] = self._schedule(bucket_batches)

    def _schedule(self, bucket_batches: int) -> list[list[int]]:
        n, size, key = len(self.lengths), self.batch_size, self.lengths.__getitem__
        if not self.shuffle:
            order = sorted(range(n), key=key)  # a stable sort: equal lengths keep input order
            return [order[i : i + size] for i in range(0, n, size)]
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=g).tolist()
        chunk = bucket_batches * size  # a multiple of the batch size: only the very last batch can be short
        batches = []
        for start in range(0, n, chunk):
            part = sorted(order[start : start + chunk], key=key)
            batches += [part[i : i + size] for i in range(0, len(part), size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def __len__(self) -> int:
        return len(self.batches)

    def _from(self, start: int) -> Iterator[LabelledBatch]:
        for idx in self.batches[start:]:
            yield self._batch(idx)

    def _batch(self, idx: list[int]) -> LabelledBatch:
        columns = [torch.as_tensor(self.sequences[i], dtype=torch.long) for i in idx]  # (T_b,) each
        x = pad_sequence(columns, padding_value=self.pad_id)  # (T, B): time-major is pad_sequence's default
        lengths = torch.tensor([self.lengths[i] for i in idx], dtype=torch.long)  # (B,)
        y = torch.tensor([self.labels[i] for i in idx], dtype=torch.long)  # (B,)
        return LabelledBatch(x, lengths, y, torch.tensor(idx, dtype=torch.long))


class PairBatch(NamedTuple):
    """One batch of translation pairs, time-major and right-padded with pad_id.

    Attributes:
        source: (S, B) source ids; source_lengths: (B,) the real steps of each column (>= 1).
        target_in: (T, B) the decoder's inputs, <bos> y_1 ... y_n; target_out: (T, B) what each step must
            predict, y_1 ... y_n <eos> (T = the longest n + 1).
        index: (B,) the positions of these pairs in the sequences given.
    """

    source: Tensor
    source_lengths: Tensor
    target_in: Tensor
    target_out: Tensor
    index: Tensor


class PairBatches(BucketBatches):
    """Length-bucketed batches of (source, target) id sequences, bucketed by source length; the same schedule
    and exact-resume behaviour as BucketBatches.

    Args:
        sources: source ids of each pair, none empty.
        targets: target ids of each pair (without <bos> and <eos>; may be empty).
        bos, eos: the target vocabulary's <bos> and <eos> ids.
        target_pad_id: what the targets are padded with (default: pad_id, the sources').
        the rest: as BucketBatches.

    Outputs (iterating): PairBatch.
    """

    def __init__(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], batch_size: int, *,
                 bos: int, eos: int, target_pad_id: int | None = None, **kwargs) -> None:
        super().__init__(sources, targets, batch_size, **kwargs)
        self.bos, self.eos = bos, eos
        self.target_pad_id = self.pad_id if target_pad_id is None else target_pad_id

    def _batch(self, idx: list[int]) -> PairBatch:
        columns = [torch.as_tensor(self.sequences[i], dtype=torch.long) for i in idx]
        source = pad_sequence(columns, padding_value=self.pad_id)  # (S, B)
        lengths = torch.tensor([self.lengths[i] for i in idx], dtype=torch.long)
        bos, eos = torch.tensor([self.bos]), torch.tensor([self.eos])
        targets = [torch.as_tensor(self.labels[i], dtype=torch.long) for i in idx]
        target_in = pad_sequence([torch.cat([bos, t]) for t in targets], padding_value=self.target_pad_id)  # (T, B)
        target_out = pad_sequence([torch.cat([t, eos]) for t in targets], padding_value=self.target_pad_id)
        return PairBatch(source, lengths, target_in, target_out, torch.tensor(idx, dtype=torch.long))
