"""Batching: stream partitioning, TBPTT continuity, random windows, resuming mid-epoch, the unigram baseline."""

import math

import pytest
import torch

from stackrnn.data import RandomBatches, SequentialBatches, batchify, unigram_perplexity, window_lengths
from stackrnn.errors import InputError


def test_batchify_cuts_contiguous_streams_into_columns():
    data = batchify(torch.arange(10), 3)  # 10 // 3 = 3 rows; token 9 dropped
    assert data.shape == (3, 3)
    assert data.t().tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_batchify_with_too_little_data_says_how_much_is_needed():
    with pytest.raises(InputError, match="need at least 4 tokens"):
        batchify(torch.arange(3), 4)


@pytest.mark.parametrize("variable", [False, True])
def test_sequential_batches_continue_every_stream(variable):
    ids = torch.arange(1000)
    batches = SequentialBatches(ids, batch_size=4, num_steps=7, variable_bptt=variable, seed=3)
    seen = list(batches)
    assert len(seen) == len(batches)
    for x, y in seen:
        assert x.shape == y.shape and x.shape[1] == 4
        assert torch.equal(y, x + 1)  # ids are arange: the target is the next token
    for (x0, _), (x1, _) in zip(seen, seen[1:]):
        assert torch.equal(x1[0], x0[-1] + 1)  # batch k+1 picks up where batch k stopped, in each column
    # Together the batches cover each stream exactly once (all but its last token as input).
    streams = torch.cat([x for x, _ in seen])  # (R-1, B)
    assert torch.equal(streams, batchify(ids, 4)[:-1])


def test_sequential_batches_fixed_lengths_and_partial_last_batch():
    batches = SequentialBatches(torch.arange(2 * 11), batch_size=2, num_steps=4)  # 11 rows -> 10 steps
    assert batches.lengths == [4, 4, 2]
    assert [x.shape[0] for x, _ in batches] == [4, 4, 2]


def test_sequential_batches_offset_drops_leading_tokens():
    x, _ = next(iter(SequentialBatches(torch.arange(100), batch_size=2, num_steps=5, offset=3)))
    assert x[0].tolist() == [3, 3 + 48]  # 97 tokens -> 48 rows per stream


def test_sequential_batches_too_little_data():
    with pytest.raises(InputError, match="need at least 8 tokens"):
        SequentialBatches(torch.arange(7), batch_size=4, num_steps=3)


@pytest.mark.parametrize("variable", [False, True])
def test_sequential_resume_equals_uninterrupted(variable):
    ids = torch.randint(50, (3000,), generator=torch.Generator().manual_seed(0))
    full = list(SequentialBatches(ids, 5, 20, variable_bptt=variable, seed=11))
    resumed = list(SequentialBatches(ids, 5, 20, variable_bptt=variable, seed=11).iter_from(4))
    assert len(resumed) == len(full) - 4
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[4:], resumed))


def test_variable_bptt_lengths_depend_only_on_the_seed():
    a = window_lengths(10_000, 70, variable=True, seed=1)
    assert a == window_lengths(10_000, 70, variable=True, seed=1)
    assert a != window_lengths(10_000, 70, variable=True, seed=2)
    assert sum(a) == 10_000
    assert all(5 <= n <= 90 for n in a[:-1])
    assert len(set(a)) > 5  # lengths really vary
    assert 55 < sum(a[:-1]) / len(a[:-1]) < 75  # mostly around num_steps, sometimes around num_steps / 2


def test_random_batches_cover_distinct_aligned_windows():
    ids = torch.arange(1000)
    batches = RandomBatches(ids, batch_size=4, num_steps=10, seed=5)
    starts = []
    for x, y in batches:
        assert x.shape == (10, 4)
        assert torch.equal(y, x + 1)
        assert torch.equal(x, x[0] + torch.arange(10)[:, None])  # each column is one contiguous window
        starts += x[0].tolist()
    assert len(starts) == len(set(starts)) == 4 * len(batches)  # no window used twice
    assert all((s - batches.offset) % 10 == 0 for s in starts)  # non-overlapping grid after the offset
    assert 0 <= batches.offset < 10
    assert len(batches) == ((1000 - batches.offset - 1) // 10) // 4


def test_random_batches_are_seeded():
    ids = torch.arange(500)
    first = lambda seed: next(iter(RandomBatches(ids, 3, 8, seed=seed)))[0]  # noqa: E731
    assert torch.equal(first(1), first(1))
    assert not torch.equal(first(1), first(2))


def test_random_resume_equals_uninterrupted():
    ids = torch.arange(2000)
    full = list(RandomBatches(ids, 4, 9, seed=7))
    resumed = list(RandomBatches(ids, 4, 9, seed=7).iter_from(3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[3:], resumed)) and len(resumed) == len(full) - 3


def test_random_batches_too_little_data():
    with pytest.raises(InputError, match="need at least"):
        RandomBatches(torch.arange(30), batch_size=4, num_steps=8)


def test_resume_index_out_of_range():
    with pytest.raises(InputError, match="outside"):
        next(SequentialBatches(torch.arange(100), 2, 5).iter_from(1000))


def test_unigram_perplexity_baseline():
    # Uniform counts: every token has p = (2 + 1) / (8 + 4) = 1/4, so perplexity is the vocabulary size.
    assert unigram_perplexity([0, 1, 2, 3] * 2, [3, 2, 1, 0], 4) == pytest.approx(4.0)
    # Skewed counts, N = 7, V = 4: p(0) = (6 + 1) / 11, p(1) = (1 + 1) / 11, evaluated on [0, 1].
    expected = math.exp(-(math.log(7 / 11) + math.log(2 / 11)) / 2)
    assert unigram_perplexity(torch.tensor([0] * 6 + [1]), torch.tensor([0, 1]), 4) == pytest.approx(expected)
    # Frequent tokens are cheaper than rare ones, and never-seen tokens stay finite.
    assert unigram_perplexity([0] * 6 + [1], [0], 4) < unigram_perplexity([0] * 6 + [1], [3], 4) < math.inf
