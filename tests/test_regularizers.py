import sys
import warnings

import pytest
import torch

from stackrnn import regularizers
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


@pytest.fixture
def compiled_drop():
    """Skips where the compiled kernels (stackrnn/kernels.py) cannot be had here: drop_weight then runs its torch
    path, which the tests above cover."""
    from stackrnn import kernels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if kernels.steps() is None or sys.byteorder != "little":
            pytest.skip("no compiled kernels here (no C compiler, or a big-endian machine)")


def _drop_both_ways(w: torch.Tensor, p: float, monkeypatch) -> list[torch.Tensor]:
    """[dropped, grad] through the compiled kernel, then [dropped, grad] as PyTorch operations, from the same seed;
    the upstream gradient is a transposed (non-contiguous) tensor, as a product's backward may hand back."""
    results = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(regularizers, "_drop_kernel", lambda weight: None)
        leaf = w.detach().clone().requires_grad_(True)
        out = drop_weight(leaf, p, True, torch.Generator().manual_seed(1))
        assert (type(out.grad_fn).__name__ == "_DropConnectBackward") == compiled
        upstream = torch.randn(out.shape[::-1], dtype=w.dtype, generator=torch.Generator().manual_seed(2)).t()
        out.backward(upstream)
        results += [out.detach(), leaf.grad]
    return results


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal as values, NaN where the other is NaN, and zeros of the same sign (a mask times a negative weight is
    -0.0 in PyTorch)."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()) and \
        torch.equal(a.signbit() | a.isnan(), b.signbit() | b.isnan())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.5, 0.75, 0.3], ids=["one bit", "one byte", "16 bits"])  # keep 1/2, 64/256, 0.7
@pytest.mark.parametrize("shape", [(4, 8), (37, 5), (3 * 65536 + 45,)], ids=["words", "a tail", "blocks"])
def test_the_compiled_weight_drop_equals_the_torch_path_bit_for_bit(dtype, p, shape, compiled_drop, monkeypatch):
    """csrc/drop.h reads each element's draw from the random words the torch path unpacks into a mask: the same
    dropped weight and gradient, inf, NaN and signed zeros alike, over a tail that fills no whole word and over
    several blocks, on one thread and shared between two (where the kernels were built with OpenMP)."""
    w = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0)).flatten()
    w[:6] = torch.tensor([float("inf"), -float("inf"), float("nan"), -0.0, 0.0, -1.0], dtype=dtype)
    w = w.view(shape)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with monkeypatch.context() as patch:
                out_c, grad_c, out_t, grad_t = _drop_both_ways(w, p, patch)
            assert _same_bits(out_c, out_t) and _same_bits(grad_c, grad_t), threads
    finally:
        torch.set_num_threads(before)
    assert 0 < (out_c == 0).double().mean().item() < 1  # something was dropped, something kept


@pytest.mark.parametrize("p, kept", [
    (0.5, "1111110101110001001111101000100010011001111001000110010001110101"),
    (0.75, "0001011001100000000100000010100100010000100100000000000000000000"),
    (0.3, "1111110111011100110100111111110111001110111011110110010001111111")])
def test_a_seeded_weight_drop_keeps_the_same_weights_as_ever(p, kept):
    """The masks a seed gives, pinned (as drawn before the compiled pass existed, and by both paths since): a
    change to how words are drawn or read would silently change every seeded run and resumed checkpoint."""
    out = drop_weight(torch.ones(64), p, True, torch.Generator().manual_seed(11))
    assert "".join("1" if v else "0" for v in (out != 0).tolist()) == kept


def test_gradcheck_through_the_compiled_weight_drop_in_float64(compiled_drop):
    w = torch.randn(9, 70, dtype=torch.float64, requires_grad=True)
    for p in (0.5, 0.75, 0.3):
        f = lambda w: drop_weight(w, p, True, torch.Generator().manual_seed(3))  # noqa: E731
        assert torch.autograd.gradcheck(f, (w,)) and torch.autograd.gradgradcheck(f, (w,))


def test_a_second_derivative_through_the_compiled_weight_drop_equals_the_torch_paths(compiled_drop, monkeypatch):
    """A gradient penalty through weight drop: the backward is itself differentiable, as weight * mask is."""
    results = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(regularizers, "_drop_kernel", lambda weight: None)
        w = torch.randn(8, 8, generator=torch.Generator().manual_seed(6)).requires_grad_(True)
        out = drop_weight(w, 0.5, True, torch.Generator().manual_seed(4))
        (grad,) = torch.autograd.grad((out ** 3).sum(), w, create_graph=True)
        (grad ** 2).sum().backward()
        results.append(w.grad)
    assert torch.equal(*results)


def test_passes_in_flight_at_once_keep_their_own_dropped_weights(compiled_drop, monkeypatch):
    """The dropped weight's memory is reused from pass to pass (scratch.reusable) only once the last pass's graph
    has let it go: three forward passes of a stack, then one backward through all three, give the gradients of
    fresh memory for every pass; after it, a pass writes into kept memory, and the next, while that result is
    held, into other memory."""
    from stackrnn import LSTM, StackedRNN, scratch

    x = torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(8))
    results = []
    for reuse in (True, False):
        if not reuse:
            monkeypatch.setattr(scratch, "reusable", lambda owner, like: torch.empty_like(like))
        torch.manual_seed(9)
        stack = StackedRNN(4, layers=[LSTM(7, weight_drop=0.5), LSTM(5, weight_drop=0.3)]).train()
        generator = torch.Generator().manual_seed(10)
        losses = [(stack(x, generator=generator)[0] * k).sum() for k in (1.0, -2.0, 3.0)]
        sum(losses).backward()
        results.append([p.grad for p in stack.parameters()])
        if reuse:
            del losses
            held = stack.layers[0].hidden_weights(generator)[0]  # the first pass's memory again, now free
            assert held.data_ptr() in [t.data_ptr() for t in scratch._pools[id(stack.layers[0].cell.weight_hh)]]
            assert stack.layers[0].hidden_weights(generator)[0].data_ptr() != held.data_ptr()  # held: not reused
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.func's own use of torch.jit.script
def test_torch_func_and_forward_ad_go_through_weight_drop(compiled_drop):
    """Under torch.func transforms and forward-mode AD the PyTorch path runs (the same mask from the same words),
    which has their rules; the compiled pass has none."""
    import torch.autograd.forward_ad as fwAD

    w = torch.randn(6, 5)
    f = lambda w: drop_weight(w, 0.5, True, torch.Generator().manual_seed(7))  # noqa: E731
    assert torch.equal(torch.func.grad(lambda w: f(w).sum())(w), f(torch.ones_like(w)))
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(f(fwAD.make_dual(w, torch.ones_like(w)))).tangent
    assert torch.equal(tangent, f(torch.ones_like(w)))


def test_weights_the_kernel_cannot_read_take_the_torch_path(compiled_drop):
    """A transposed (non-contiguous) or half-precision weight is dropped by PyTorch operations, with a mask of the
    same rate."""
    for w in (torch.ones(64, 300).t(), torch.ones(300, 64, dtype=torch.bfloat16)):
        out = drop_weight(w, 0.5, True, torch.Generator().manual_seed(5))
        assert type(out.grad_fn).__name__ != "_DropConnectBackward" and out.shape == w.shape
        assert abs((out != 0).float().mean().item() - 0.5) < 0.02


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rates", [(0.1, 0.1), (0.5, 0.25), (1.0, 0.3), (0.0, 0.2), (0.15, 0.0)])
@pytest.mark.parametrize("shape", [(35, 32, (256, 256)), (3, 5, (7, 9)), (1, 1, (1, 33))])
def test_zoneout_factors_are_the_reference_masks_as_numbers(dtype, rates, shape, compiled_drop):
    """The engine's keep factors, written by the compiled kernel from the random words, equal the reference
    loop's boolean masks (zoneout_keeps) from the same seed for every kind of draw (1, 8 and 16 bits, rate 1,
    rate 0), sizes that fill no whole word included, and leave the generator where zoneout_keeps leaves it."""
    from stackrnn.regularizers import zoneout_factors, zoneout_keeps

    steps, batch, sizes = shape
    g1, g2 = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    factors = zoneout_factors(steps, batch, sizes, rates, True, torch.zeros(1), dtype, g1)
    keeps = zoneout_keeps(steps, batch, sizes, rates, True, torch.zeros(1), g2)
    for factor, keep in zip(factors, keeps):
        assert (factor is None) == (keep is None)
        if keep is not None:
            assert factor.dtype == dtype and torch.equal(factor, keep.to(dtype))
    assert torch.equal(g1.get_state(), g2.get_state())
    assert zoneout_factors(steps, batch, sizes, rates, False, torch.zeros(1), dtype, g1) == (None, None)


def test_zoneout_factors_without_the_kernels_are_the_masks_cast(monkeypatch):
    from stackrnn import kernels
    from stackrnn.regularizers import zoneout_factors, zoneout_keeps

    monkeypatch.setattr(kernels, "steps", lambda dtype=torch.float32: None)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    factors = zoneout_factors(4, 3, (5, 6), (0.2, 0.7), True, torch.zeros(1), torch.float32, g1)
    keeps = zoneout_keeps(4, 3, (5, 6), (0.2, 0.7), True, torch.zeros(1), g2)
    for factor, keep in zip(factors, keeps):
        assert torch.equal(factor, keep.float())
