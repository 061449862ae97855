"""BucketBatches: every example once, padding and lengths, seeded order, exact resume, sorted evaluation."""

import pytest
import torch

from stackrnn.data import BucketBatches, LabelledBatch
from stackrnn.errors import InputError

PAD = 9  # not a token of the sequences below, so padding is recognisable


def data(n=103, seed=0):
    """n sequences of length 1..12 over tokens 1..5, and labels 0..2."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 13, (n,), generator=g).tolist()
    seqs = [torch.randint(1, 6, (k,), generator=g).tolist() for k in lengths]
    return seqs, [i % 3 for i in range(n)]


def flat(batches):
    return [[t.tolist() for t in b] for b in batches]


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_example_once_with_right_padding_lengths_and_labels(shuffle):
    seqs, labels = data()
    batches = BucketBatches(seqs, labels, 8, shuffle=shuffle, seed=3, pad_id=PAD, bucket_batches=4)
    assert len(batches) == 13  # ceil(103 / 8)
    seen = []
    for b in batches:
        assert isinstance(b, LabelledBatch) and all(t.dtype == torch.long for t in b)
        T, B = b.x.shape
        assert b.lengths.shape == b.y.shape == b.index.shape == (B,) and T == int(b.lengths.max())
        for col, i in enumerate(b.index.tolist()):
            n = len(seqs[i])
            assert b.lengths[col] == n and b.y[col] == labels[i]
            assert b.x[:n, col].tolist() == seqs[i]
            assert (b.x[n:, col] == PAD).all()
        seen += b.index.tolist()
    assert sorted(seen) == list(range(103))
    sizes = [b.x.shape[1] for b in batches]
    assert sizes.count(8) == 12 and sizes.count(7) == 1  # only one batch is short


def test_order_is_a_function_of_the_seed():
    seqs, labels = data()
    order = lambda seed: flat(BucketBatches(seqs, labels, 8, seed=seed))  # noqa: E731
    assert order(1) == order(1)
    assert [b[3] for b in order(1)] != [b[3] for b in order(2)]  # the index tensors differ


def test_shuffled_batches_hold_texts_of_similar_length():
    seqs, labels = data(n=200)
    # one chunk covers everything: each batch is a slice of the sorted order, so the batches tile the lengths
    batches = BucketBatches(seqs, labels, 10, seed=0, bucket_batches=20)
    spans = sorted((int(b.lengths.min()), int(b.lengths.max())) for b in batches)
    assert all(hi <= lo_next for (_, hi), (lo_next, _) in zip(spans, spans[1:]))
    # a different order than sorted: the batches themselves are shuffled
    assert [int(b.lengths.min()) for b in batches] != [lo for lo, _ in spans]


def test_iter_from_equals_the_tail_of_a_full_epoch():
    seqs, labels = data()
    batches = BucketBatches(seqs, labels, 8, seed=5, bucket_batches=2)
    full = flat(batches)
    for k in (0, 1, 7, len(batches)):
        assert flat(batches.iter_from(k)) == full[k:]
    with pytest.raises(InputError, match="outside this epoch"):
        next(batches.iter_from(len(batches) + 1))


def test_evaluation_order_is_sorted_by_length_and_stable():
    seqs, labels = data()
    batches = BucketBatches(seqs, labels, 16, shuffle=False)
    index = [i for b in batches for i in b.index.tolist()]
    assert index == sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # ties in input order
    assert flat(batches) == flat(BucketBatches(seqs, labels, 16, shuffle=False, seed=99))  # seed plays no part


def test_tensor_sequences_and_input_order_restored_through_index():
    seqs = [torch.tensor([1, 2, 3]), torch.tensor([4]), torch.tensor([5, 6])]
    out = torch.zeros(3, dtype=torch.long)
    for b in BucketBatches(seqs, [0, 1, 2], 2, pad_id=0):
        out[b.index] = b.lengths  # put per-example results back in input order
    assert out.tolist() == [3, 1, 2]


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (([[1], [], [2]], [0, 0, 0], 2), {}, "sequence 1 is empty"),
        (([[1], [2]], [0], 2), {}, "2 sequences but 1 labels"),
        (([], [], 2), {}, "no examples"),
        (([[1]], [0], 0), {}, "batch_size"),
        (([[1]], [0], 2), {"bucket_batches": 0}, "bucket_batches"),
    ],
)
def test_bad_arguments_raise_input_error(args, kwargs, message):
    with pytest.raises(InputError, match=message):
        BucketBatches(*args, **kwargs)
