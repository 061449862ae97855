"""Residual connections, variational dropout and weight drop in StackedRNN: composed with the fused plan,
the reference loop, bidirectional and mixed stacks, and lengths."""

import pytest
import torch
from torch import nn

from stackrnn import GRU, LSTM, StackedRNN, summary

T, B, D = 7, 3, 5


def _stack(**kw):
    torch.manual_seed(0)
    return StackedRNN(D, layers=[LSTM(6), LSTM(6), GRU(4, bidirectional=True), LSTM(6, weight_drop=0.3)], **kw)


def test_residual_equals_the_layers_composed_by_hand():
    stack = _stack(residual=True).eval()
    x = torch.randn(T, B, D)
    h1, _ = stack.layers[0](x)
    h2 = stack.layers[1](h1)[0] + h1
    h3 = stack.layers[2](h2)[0] + stack.residual_projections["2"](h2)  # 6 -> 8 features: projected
    h4 = stack.layers[3](h3)[0] + stack.residual_projections["3"](h3)  # 8 -> 6
    for fused in (True, False):
        stack.fused = fused
        torch.testing.assert_close(stack(x)[0], h4, atol=1e-6, rtol=0)
    assert set(stack.residual_projections) == {"2", "3"}


def test_residual_from_layer_k():
    stack = StackedRNN(D, 6, num_layers=4, residual=3).eval()
    assert [stack.is_residual(i) for i in range(4)] == [False, False, True, True]
    x = torch.randn(T, B, D)
    h = x
    for i, layer in enumerate(stack.layers):
        out = layer(h)[0]
        h = out + h if i >= 2 else out
    torch.testing.assert_close(stack(x)[0], h, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kw", [dict(residual=True), dict(residual=True, variational=True, dropout=0.4),
                                dict(variational=True, dropout=0.4)])
def test_fused_and_loop_agree_in_training_with_the_same_masks(kw):
    stack = _stack(**kw).train()
    x = torch.randn(T, B, D)
    results = []
    for fused in (True, False):
        stack.fused = fused
        stack.zero_grad()
        out, _ = stack(x, lengths=[T, 4, 2], generator=torch.Generator().manual_seed(5))
        out.pow(2).sum().backward()
        results.append((out, [p.grad.clone() for p in stack.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=0)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_residual_gradcheck_float64():
    torch.manual_seed(0)
    stack = StackedRNN(3, layers=[LSTM(2), GRU(3, bidirectional=True), LSTM(2)], residual=True).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    for fused in (True, False):
        stack.fused = fused
        assert torch.autograd.gradcheck(lambda inp: stack(inp, lengths=[4, 2])[0], (x,))


def test_variational_masks_are_constant_over_time():
    torch.manual_seed(0)
    stack = StackedRNN(D, 6, num_layers=2, dropout=0.5, variational=True)
    # the second layer sees dropout(h1): a unit dropped at one step is dropped at every step
    seen = {}
    stack.layers[1].register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))  # returns None: input unchanged
    stack.fused = False
    stack.train()(torch.randn(T, B, D))
    zeros = seen["x"] == 0  # (T, B, 6)
    assert zeros.any() and (zeros == zeros[0]).all()


def test_eval_is_deterministic_and_equals_the_plain_stack():
    stack = _stack(dropout=0.5, variational=True).eval()
    plain = StackedRNN(D, layers=[LSTM(6), LSTM(6), GRU(4, bidirectional=True), LSTM(6)])
    plain.load_state_dict(stack.state_dict())
    x = torch.randn(T, B, D)
    torch.testing.assert_close(stack(x)[0], stack(x)[0], atol=0, rtol=0)
    torch.testing.assert_close(stack(x)[0], plain(x)[0], atol=0, rtol=0)


def test_weight_drop_changes_weights_per_forward_in_training_only():
    torch.manual_seed(0)
    stack = StackedRNN(D, layers=[LSTM(6, weight_drop=0.5), LSTM(6, weight_drop=0.5)])
    before = {k: v.clone() for k, v in stack.state_dict().items()}
    x = torch.randn(T, B, D)
    stack.train()
    a, b = stack(x)[0], stack(x)[0]
    assert not torch.allclose(a, b)  # a fresh W_hh mask each forward pass
    out = stack(x)[0]
    out.sum().backward()
    assert (stack.layers[0].cell.weight_hh.grad == 0).float().mean() > 0.3  # dropped weights get no gradient
    for k, v in stack.state_dict().items():
        assert torch.equal(v, before[k]), k  # the parameters themselves are never modified
    stack.eval()
    plain = StackedRNN(D, 6, num_layers=2)
    plain.load_state_dict(stack.state_dict())
    torch.testing.assert_close(stack(x)[0], plain(x)[0], atol=0, rtol=0)


def test_options_at_zero_equal_torch():
    torch.manual_seed(0)
    ref = nn.LSTM(D, 6, num_layers=3, dropout=0.0)
    stack = StackedRNN.from_torch(ref, residual=False, variational=True)
    x = torch.randn(T, B, D)
    torch.testing.assert_close(stack(x)[0], ref(x)[0], atol=1e-6, rtol=0)


def test_summary_counts_residual_projections():
    stack = _stack(residual=True)
    s = summary(stack, (T, B, D))
    assert s.total_params == sum(p.numel() for p in stack.parameters()) == sum(r.params for r in s.rows)
    assert s.rows[2].type == "GRU bidirectional +residual"


@pytest.mark.parametrize("kw, match", [
    (dict(residual=1), r"residual: expected True, False or a layer number in \[2, 4\], got 1"),
    (dict(residual=9), r"residual: .* got 9"),
    (dict(residual=True, residual_projection=False), r"residual: layer 3 maps 6 features to 8"),
])
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        _stack(**kw)


def test_bad_weight_drop_and_to_torch():
    with pytest.raises(ValueError, match=r"weight_drop: expected a number in \[0, 1\), got 1.0"):
        LSTM(4, weight_drop=1.0)
    with pytest.raises(ValueError, match="to_torch"):
        StackedRNN(D, 6, num_layers=2, residual=True).to_torch()
