"""StackedRNN against torch.nn: outputs, final states and gradients equal within 1e-5, fused and looped."""

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from stackrnn import GRU, LSTM, RNN, StackedRNN

TORCH = {
    "rnn_tanh": lambda **kw: nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: nn.RNN(nonlinearity="relu", **kw),
    "gru": lambda **kw: nn.GRU(**kw),
    "lstm": lambda **kw: nn.LSTM(**kw),
}
T, B, D, H = 6, 3, 4, 5


def _flat_state(state):
    """Our per-layer states -> torch's h_n (and c_n)."""
    if isinstance(state[0], tuple):
        return torch.cat([s[0] for s in state]), torch.cat([s[1] for s in state])
    return (torch.cat(state),)


def _run_torch(ref, x, lengths):
    if lengths is None:
        out, h = ref(x)
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=ref.batch_first, enforce_sorted=False)
        out, h = ref(packed)
        out, _ = pad_packed_sequence(out, batch_first=ref.batch_first, total_length=T)
    return out, (h if isinstance(h, tuple) else (h,))


@pytest.mark.parametrize(
    "cell, num_layers, bidirectional, batch_first, with_lengths, fused",
    list(itertools.product(TORCH, [1, 2, 3, 4], [False, True], [False, True], [False, True], [True, False])),
)
def test_equals_torch(cell, num_layers, bidirectional, batch_first, with_lengths, fused):
    torch.manual_seed(num_layers)
    ref = TORCH[cell](input_size=D, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    stack = StackedRNN.from_torch(ref, fused=fused)
    x = torch.randn((B, T, D) if batch_first else (T, B, D))
    lengths = torch.tensor([T, 2, 1]) if with_lengths else None
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()

    out, state = stack(x_ours, lengths=lengths)
    ref_out, ref_state = _run_torch(ref, x_ref, lengths)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    for ours, theirs in zip(_flat_state(state), ref_state):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    # one scalar that depends on every output and state, so every gradient path is exercised
    weights = torch.randn_like(out)
    loss = (out * weights).sum() + sum(s.sum() for s in _flat_state(state))
    ref_loss = (ref_out * weights).sum() + sum(s.sum() for s in ref_state)
    loss.backward()
    ref_loss.backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=0)
    for ours, theirs in zip(stack._torch_parameter_names(), ref._flat_weights_names):
        torch.testing.assert_close(stack.get_parameter(ours).grad, getattr(ref, theirs).grad, atol=1e-5, rtol=0, msg=ours)


def _state_tensors(state):
    """Every tensor of a (possibly mixed) stack state, in order."""
    return tuple(t for s in state for t in (s if isinstance(s, tuple) else (s,)))


def test_fused_and_loop_agree_on_mixed_bidirectional_stack_with_state():
    torch.manual_seed(0)
    stack = StackedRNN(D, layers=[LSTM(5), LSTM(5), GRU(4, bidirectional=True), RNN(3), RNN(3, nonlinearity="relu")])
    x = torch.randn(T, B, D)
    state0 = [tuple(torch.randn_like(t) for t in s) if isinstance(s, tuple) else torch.randn_like(s) for s in stack.zero_state(B)]
    lengths = [4, T, 2]
    results = []
    for fused in (True, False):
        stack.fused = fused
        stack.zero_grad()
        xi = x.clone().requires_grad_()
        out, state = stack(xi, state0, lengths)
        (out.sum() + sum(s.sum() for s in _state_tensors(state))).backward()
        results.append((out, _state_tensors(state), xi.grad, [p.grad.clone() for p in stack.parameters()]))
    (o1, s1, g1, p1), (o2, s2, g2, p2) = results
    torch.testing.assert_close(o1, o2, atol=1e-5, rtol=0)
    for a, b in zip(s1 + (g1,) + tuple(p1), s2 + (g2,) + tuple(p2)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_state_passed_back_continues_the_sequence():
    torch.manual_seed(0)
    stack = StackedRNN(D, layers=[LSTM(5), GRU(6)])
    x = torch.randn(8, B, D)
    whole, whole_state = stack(x)
    first, state = stack(x[:5])
    second, state = stack(x[5:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    for a, b in zip(_state_tensors(state), _state_tensors(whole_state)):
        torch.testing.assert_close(a, b)


def test_padding_never_reaches_valid_outputs_or_states():
    torch.manual_seed(0)
    stack = StackedRNN(D, layers=[LSTM(5, bidirectional=True), GRU(4, bidirectional=True)])
    for fused in (True, False):
        stack.fused = fused
        x = torch.randn(T, 2, D)
        alone, alone_state = stack(x[:3, :1])
        x[3:, 0] = 1e3  # garbage in the padding of sequence 0
        padded, padded_state = stack(x, lengths=[3, T])
        torch.testing.assert_close(padded[:3, :1], alone, atol=1e-6, rtol=0)
        assert padded[3:, 0].abs().max() == 0
        for a, b in zip(_state_tensors(padded_state), _state_tensors(alone_state)):
            torch.testing.assert_close(a[:, :1], b, atol=1e-6, rtol=0)


def test_mixed_stack_shapes_and_gradients():
    torch.manual_seed(0)
    stack = StackedRNN(7, layers=[LSTM(16), GRU(8, bidirectional=True), LSTM(12)], dropout=0.3, batch_first=True)
    x = torch.randn(B, T, 7)
    out, state, per_layer = stack(x, return_all_layers=True)
    assert out.shape == (B, T, 12)
    assert [o.shape for o in per_layer] == [(B, T, 16), (B, T, 16), (B, T, 12)]
    torch.testing.assert_close(per_layer[-1], out)
    assert state[0][0].shape == (1, B, 16) and state[0][1].shape == (1, B, 16)
    assert state[1].shape == (2, B, 8)
    assert state[2][0].shape == (1, B, 12)
    out.pow(2).mean().backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_all_layers_equal_a_stack_cut_at_each_layer():
    torch.manual_seed(0)
    stack = StackedRNN(D, layers=[LSTM(5), GRU(6), LSTM(4)]).eval()
    x = torch.randn(T, B, D)
    _, _, per_layer = stack(x, return_all_layers=True)
    h = x
    for l, layer in enumerate(stack.layers):
        h, _ = layer(h)
        torch.testing.assert_close(per_layer[l], h, atol=1e-6, rtol=0)


def test_tiny_mixed_stack_overfits():
    torch.manual_seed(0)
    stack = StackedRNN(3, layers=[LSTM(16), GRU(16), LSTM(16)])
    head = nn.Linear(16, 1)
    x, y = torch.randn(10, 4, 3), torch.randn(10, 4, 1)
    opt = torch.optim.Adam([*stack.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(200):
        loss = nn.functional.mse_loss(head(stack(x)[0]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_dropout_between_layers_only_and_identity_in_eval():
    torch.manual_seed(0)
    stack = StackedRNN(D, H, num_layers=3, dropout=0.5)
    x = torch.randn(T, B, D)
    stack.eval()
    ref = stack.to_torch().eval()
    no_dropout = StackedRNN(D, H, num_layers=3)
    no_dropout.load_state_dict(stack.state_dict())
    torch.testing.assert_close(stack(x)[0], no_dropout(x)[0])
    torch.testing.assert_close(stack(x)[0], ref(x)[0])
    # in training, dropout changes the output, but never after the top layer: an LSTM's h is o * tanh(c), so
    # the top output holds no exact zeros, which dropout applied to it would put there
    stack.train()
    for fused in (True, False):
        stack.fused = fused
        out = stack(x)[0]
        assert not torch.allclose(out, no_dropout(x)[0])
        assert (out == 0).sum() == 0
    single = StackedRNN(D, H, num_layers=1, dropout=0.5).train()
    plain = StackedRNN(D, H, num_layers=1)
    plain.load_state_dict(single.state_dict())
    torch.testing.assert_close(single(x)[0], plain(x)[0])


def test_to_torch_round_trip():
    torch.manual_seed(0)
    stack = StackedRNN(D, H, num_layers=2, cell="gru", bidirectional=True, batch_first=True)
    ref = stack.to_torch()
    assert isinstance(ref, nn.GRU) and ref.bidirectional and ref.batch_first and ref.num_layers == 2
    x = torch.randn(B, T, D)
    torch.testing.assert_close(stack(x)[0], ref(x)[0])
    back = StackedRNN.from_torch(ref)
    torch.testing.assert_close(back(x)[0], ref(x)[0])


def test_to_torch_refuses_mixed_stack():
    with pytest.raises(ValueError, match="to_torch"):
        StackedRNN(D, layers=[LSTM(5), GRU(5)]).to_torch()


def test_float64_fused_and_loop():
    torch.manual_seed(0)
    stack = StackedRNN(D, layers=[LSTM(3), GRU(3, bidirectional=True)]).double()
    x = torch.randn(T, 2, D, dtype=torch.float64, requires_grad=True)
    for fused in (True, False):
        stack.fused = fused
        assert torch.autograd.gradcheck(lambda inp: stack(inp, lengths=[T, 3])[0], (x,))


# -- bad input: ValueError naming the argument, the expected and the received value --------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_size=0, hidden_size=4), r"input_size: expected an integer >= 1, got 0"),
        (dict(input_size=3, hidden_size=-1), r"hidden_size: expected an integer >= 1, got -1"),
        (dict(input_size=3, hidden_size=4, num_layers=0), r"num_layers: expected an integer >= 1, got 0"),
        (dict(input_size=3, hidden_size=4, cell="lstmm"), r"cell: expected one of .* got 'lstmm'"),
        (dict(input_size=3, hidden_size=4, dropout=1.0), r"dropout: expected a number in \[0, 1\), got 1.0"),
        (dict(input_size=3, hidden_size=4, dropout=-0.1), r"dropout: .* got -0.1"),
        (dict(input_size=3), r"hidden_size: expected"),
        (dict(input_size=3, layers=[]), r"layers: expected a non-empty list"),
        (dict(input_size=3, hidden_size=4, layers=[LSTM(4)]), r"hidden_size: expected None"),
    ],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StackedRNN(**kwargs)


def test_bad_layer_specs():
    with pytest.raises(ValueError, match="hidden_size: expected an integer >= 1, got 0"):
        LSTM(0)
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(4, nonlinearity="gelu")


def test_bad_forward_inputs():
    stack = StackedRNN(D, layers=[LSTM(5), GRU(4)])
    x = torch.randn(T, B, D)
    with pytest.raises(ValueError, match=r"input: expected a 3-d tensor \(T, B, D\), got shape \(6, 4\)"):
        stack(torch.randn(T, D))
    with pytest.raises(ValueError, match=r"input: expected last dimension D = input_size = 4, got shape \(6, 3, 5\)"):
        stack(torch.randn(T, B, D + 1))
    with pytest.raises(ValueError, match=r"lengths: expected every length in \[1, T = 6\], got min 1 and max 7"):
        stack(x, lengths=[7, 1, 2])
    with pytest.raises(ValueError, match=r"lengths: .* got min 0"):
        stack(x, lengths=[0, 1, 2])
    with pytest.raises(ValueError, match=r"lengths: expected 3 integers"):
        stack(x, lengths=[1, 2])
    with pytest.raises(ValueError, match=r"state: expected a list of 2 layer states"):
        stack(x, state=[torch.zeros(1, B, 5)])
    good = stack.zero_state(B)
    with pytest.raises(ValueError, match=r"state\[1\]: expected tensors of shape \(1, 3, 4\).*got shape \(1, 2, 4\)"):
        stack(x, state=[good[0], torch.zeros(1, 2, 4)])
    with pytest.raises(ValueError, match=r"state\[0\]: expected an LSTM state pair"):
        stack(x, state=[torch.zeros(1, B, 5), good[1]])
    # no silent broadcasting: a state without the direction dimension is refused
    with pytest.raises(ValueError, match=r"state\[1\]"):
        stack(x, state=[good[0], torch.zeros(B, 4)])
