import pytest
import torch

from stackrnn.regularizers import check_probability, drop_weight, embedding_dropout, locked_dropout, _below


def test_locked_dropout_mask_is_constant_over_time():
    x = torch.ones(50, 4, 8)
    out = locked_dropout(x, 0.5, True, torch.Generator().manual_seed(0))
    assert (out == out[0]).all()  # every step the same mask
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert not (out[0] == out[0, 0]).all()  # but sequences differ from each other


def test_identity_in_eval_and_at_zero():
    x = torch.randn(5, 3, 4)
    w = torch.randn(6, 4)
    assert locked_dropout(x, 0.5, False) is x and locked_dropout(x, 0.0, True) is x
    assert drop_weight(w, 0.5, False) is w and embedding_dropout(w, 0.5, False) is w


def test_embedding_dropout_drops_whole_rows_and_weight_drop_is_fresh_per_call():
    w = torch.ones(100, 6)
    out = embedding_dropout(w, 0.3, True, torch.Generator().manual_seed(1))
    assert ((out == 0).all(1) | (out != 0).all(1)).all()  # rows dropped whole
    g = torch.Generator().manual_seed(2)
    assert not torch.equal(drop_weight(w, 0.5, True, g), drop_weight(w, 0.5, True, g))


def test_seeded_masks_repeat():
    x = torch.ones(3, 4, 5)
    a = locked_dropout(x, 0.5, True, torch.Generator().manual_seed(7))
    b = locked_dropout(x, 0.5, True, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "0.5", True])
def test_bad_probabilities(p):
    with pytest.raises(ValueError, match=r"weight_drop: expected a number in \[0, 1\)"):
        check_probability("weight_drop", p)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_masks_keep_the_expectation(p):
    w = torch.ones(400, 500)
    out = drop_weight(w, p, True, torch.Generator().manual_seed(3))
    kept = (out != 0).double().mean().item()
    assert abs(kept - (1 - p)) < 0.005  # 200,000 draws: standard error under 0.0012
    assert abs(out.double().mean().item() - 1.0) < 0.01  # scaled so the mean is unchanged


@pytest.mark.parametrize("q", [0.5, 0.25, 0.75, 3 / 256, 0.3, 0.9])
def test_every_bit_width_draws_independent_elements_at_the_rate(q):
    """q = 0.5 takes one bit per element, multiples of 1/256 a byte, others 16 bits (regularizers._below): each way
    the rate is q as drawn, every bit position of a packed word alike, and neighbours uncorrelated."""
    mask, drawn = _below((1000, 960), q, torch.zeros(1), torch.Generator().manual_seed(4))
    assert mask.shape == (1000, 960) and mask.dtype == torch.bool
    x = mask.double()
    assert abs(x.mean().item() - q) < 0.005  # 960,000 draws
    by_position = x.flatten().view(-1, 64).mean(0)  # position inside a 64-bit word
    assert (by_position - drawn).abs().max().item() < 0.02  # 15,000 draws each: standard error 0.004, 64 of them
    neighbours = torch.corrcoef(torch.stack([x.flatten()[:-1], x.flatten()[1:]]))[0, 1].item()
    assert abs(neighbours) < 0.01


@pytest.mark.parametrize("shape", [(1,), (17,), (65,), (3, 5, 7), (0, 4)])
@pytest.mark.parametrize("q", [0.5, 0.25, 0.3])
def test_masks_of_any_size_have_their_shape(shape, q):
    """Sizes that fill no whole word of random bits (and an empty one) still get a mask of their own shape."""
    mask, _ = _below(shape, q, torch.zeros(1), torch.Generator().manual_seed(5))
    assert mask.shape == shape and mask.dtype == torch.bool


def test_zoneout_rate_one_keeps_everything_without_drawing():
    from stackrnn.regularizers import zoneout_masks

    g = torch.Generator().manual_seed(6)
    before = g.get_state()
    assert zoneout_masks(4, 3, 5, 1.0, torch.zeros(1), g).all()
    assert torch.equal(g.get_state(), before)
