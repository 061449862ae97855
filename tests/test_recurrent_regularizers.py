"""Recurrent dropout and zoneout: inside the recurrence, through the engine (fused=True, the default). Gradients
by gradcheck in float64, masks constant over time where they must be, eval deterministic, rate 1 keeps the
initial state."""

import pytest
import torch

from stackrnn import GRU, LSTM, RNN, StackedRNN
from stackrnn.regularizers import recurrent_mask

from .conftest import stack_gradcheck


def _seeded(module, x, lengths=None, seed=5):
    """The module's output with masks from a freshly seeded generator: the same masks at every call."""
    return module(x, lengths=lengths, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layers", [
    [LSTM(3, zoneout=(0.3, 0.2)), LSTM(2, bidirectional=True, recurrent_dropout=0.4)],
    [GRU(3, recurrent_dropout=0.3, zoneout=0.25)],
    [RNN(3, recurrent_dropout=0.5, zoneout=0.1, bidirectional=True)],
])
def test_gradcheck_in_float64_with_fixed_masks(layers):
    torch.manual_seed(0)
    stack = StackedRNN(4, layers=layers).double().train()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 3, 4])

    assert stack_gradcheck(stack, x, lengths)


def test_zero_rates_equal_the_core_stack():
    torch.manual_seed(1)
    plain = StackedRNN(4, layers=[LSTM(6), GRU(5)])
    zero = StackedRNN(4, layers=[LSTM(6, zoneout=0.0, recurrent_dropout=0.0), GRU(5, zoneout=(0.0, 0.0))])
    zero.load_state_dict(plain.state_dict())
    x = torch.randn(7, 2, 4)
    torch.testing.assert_close(zero(x)[0], plain(x)[0], atol=0, rtol=0)


def test_zoneout_rate_one_keeps_the_initial_state():
    stack = StackedRNN(3, layers=[LSTM(4, zoneout=1.0)]).train()
    h0, c0 = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    out, [(h, c)] = stack(torch.randn(6, 2, 3), [(h0, c0)])
    torch.testing.assert_close(h, h0)
    torch.testing.assert_close(c, c0)
    torch.testing.assert_close(out, h0.expand(6, 2, 4))


def test_recurrent_dropout_mask_is_one_mask_for_every_step():
    """Dropping h_{t-1} with a fixed mask m at every step is the plain recurrence with W_hh's columns scaled by m
    (batch 1, so one mask): equal outputs prove the mask does not change from step to step."""
    torch.manual_seed(2)
    dropped = StackedRNN(3, layers=[GRU(5, recurrent_dropout=0.5)]).train()
    plain = StackedRNN(3, layers=[GRU(5)], fused=False).train()
    plain.load_state_dict(dropped.state_dict())
    x = torch.randn(8, 1, 3)
    m = recurrent_mask(1, 5, 0.5, x, torch.Generator().manual_seed(9))  # the draw the layer makes first
    with torch.no_grad():
        plain.layers[0].cell.weight_hh.mul_(m)  # (3H, H) * (1, H): column j scaled by m_j
    torch.testing.assert_close(_seeded(dropped, x, seed=9)[0], plain(x)[0])


def test_eval_is_deterministic_and_uses_zoneouts_expectation():
    torch.manual_seed(3)
    stack = StackedRNN(3, layers=[RNN(4, zoneout=0.5, recurrent_dropout=0.3)]).eval()
    x = torch.randn(5, 2, 3)
    a, b = stack(x)[0], stack(x)[0]
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    # eval: h_t = 0.5 h_{t-1} + 0.5 tanh(...), recurrent dropout off
    cell, h, outs = stack.layers[0].cell, torch.zeros(2, 4), []
    for t in range(5):
        h = 0.5 * h + 0.5 * torch.tanh(x[t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh)
        outs.append(h)
    torch.testing.assert_close(a, torch.stack(outs))


def test_training_masks_differ_between_calls_and_follow_the_generator():
    stack = StackedRNN(3, layers=[LSTM(4, zoneout=0.3, recurrent_dropout=0.3)]).train()
    x = torch.randn(5, 2, 3)
    assert not torch.equal(stack(x)[0], stack(x)[0])
    torch.testing.assert_close(_seeded(stack, x)[0], _seeded(stack, x)[0], atol=0, rtol=0)


def test_padding_never_reaches_a_state_with_zoneout():
    torch.manual_seed(4)
    stack = StackedRNN(3, layers=[LSTM(4, bidirectional=True, zoneout=0.3, recurrent_dropout=0.2)]).eval()
    x = torch.randn(6, 2, 3)
    out, _ = stack(x, lengths=torch.tensor([6, 3]))
    alone, _ = stack(x[:3, 1:2])
    torch.testing.assert_close(out[:3, 1:2], alone)
    assert torch.all(out[3:, 1] == 0)


@pytest.mark.parametrize("kwargs, match", [
    ({"zoneout": 1.5}, "zoneout"), ({"zoneout": (0.1, -0.1)}, "zoneout"), ({"zoneout": (0.1, 0.2, 0.3)}, "zoneout"),
    ({"recurrent_dropout": 1.0}, "recurrent_dropout"),
])
def test_bad_rates_are_value_errors_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LSTM(4, **kwargs)


def test_torch_nn_cannot_express_them():
    with pytest.raises(ValueError, match="torch.nn has no zoneout; got zoneout=0.1"):
        StackedRNN(3, layers=[LSTM(4, zoneout=0.1)]).to_torch()
    with pytest.raises(ValueError, match="torch.nn has no recurrent_dropout"):
        StackedRNN(3, layers=[LSTM(4, recurrent_dropout=0.2)]).to_torch()


def test_a_c_rate_on_a_cell_without_c_changes_nothing():
    assert GRU(4, zoneout=(0.0, 0.3)).zoneout_rates == (0.0, 0.0) and GRU(4, zoneout=(0.0, 0.3)).fusable
    assert LSTM(4, zoneout=(0.0, 0.3)).zoneout_rates == (0.0, 0.3) and not LSTM(4, zoneout=(0.0, 0.3)).fusable
