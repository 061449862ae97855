"""Each cell equals torch.nn's cell of the same kind, step by step, with the same parameters."""

import pytest
import torch
from torch import nn

from stackrnn.cells import GRUCell, LSTMCell, RNNCell, make_cell

CASES = [
    (lambda: RNNCell(5, 7, nonlinearity="tanh"), lambda: nn.RNNCell(5, 7, nonlinearity="tanh")),
    (lambda: RNNCell(5, 7, nonlinearity="relu"), lambda: nn.RNNCell(5, 7, nonlinearity="relu")),
    (lambda: GRUCell(5, 7), lambda: nn.GRUCell(5, 7)),
    (lambda: LSTMCell(5, 7), lambda: nn.LSTMCell(5, 7)),
    (lambda: LSTMCell(5, 7, bias=False), lambda: nn.LSTMCell(5, 7, bias=False)),
]


@pytest.mark.parametrize("ours, theirs", CASES)
def test_cell_step_equals_torch(ours, theirs):
    torch.manual_seed(0)
    cell, ref = ours(), theirs()
    # same names, same shapes: the copy is one to one
    assert [n for n, _ in cell.named_parameters()] == [n for n, _ in ref.named_parameters()]
    cell.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5)
    state = None
    ref_state = None
    for _ in range(4):
        state = cell(x, state)
        ref_state = ref(x, ref_state)
        for a, b in zip(state if isinstance(state, tuple) else (state,), ref_state if isinstance(ref_state, tuple) else (ref_state,)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_gate_layout_matches_torch():
    assert LSTMCell(3, 4).weight_ih.shape == (16, 3)
    assert GRUCell(3, 4).weight_hh.shape == (12, 4)
    assert RNNCell(3, 4).bias_ih.shape == (4,)


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity"):
        RNNCell(3, 4, nonlinearity="sigmoid")


def test_make_cell_names():
    assert isinstance(make_cell("lstm", 2, 3), LSTMCell)
    assert make_cell("rnn_relu", 2, 3).nonlinearity == "relu"
