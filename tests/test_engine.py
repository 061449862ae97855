"""The engine (stackrnn/engine.py): layers with layer norm, zoneout or recurrent dropout run a hand-written
backward pass. Checked against the reference step loop (fused=False) in float32 and by gradcheck in float64."""

import pytest
import torch

from stackrnn import GRU, LSTM, RNN, StackedRNN, settings

from .conftest import stack_gradcheck

OPTIONS = {
    "layer norm": dict(layer_norm=True),
    "zoneout": dict(zoneout=0.3),
    "recurrent dropout": dict(recurrent_dropout=0.3),
    "all, bidirectional": dict(layer_norm=True, zoneout=0.2, recurrent_dropout=0.25, bidirectional=True),
    "projection (lstm)": dict(proj_size=5, zoneout=(0.2, 0.1), recurrent_dropout=0.25, bidirectional=True),
}


def _outputs_and_grads(stack, x, lengths):
    """Output, final states and the gradients of a fixed weighted sum of them (O(1) in size) w.r.t. x and every
    parameter, with masks from a freshly seeded generator."""
    x = x.detach().clone().requires_grad_(True)
    out, state = stack(x, lengths=lengths, generator=torch.Generator().manual_seed(11))
    flat = [out] + [t for s in state for t in (s if isinstance(s, tuple) else (s,))]
    weights = torch.Generator().manual_seed(12)
    loss = sum((t * torch.randn(t.shape, generator=weights)).sum() / t.numel() ** 0.5 for t in flat)
    return flat, torch.autograd.grad(loss, [x, *stack.parameters()])


@pytest.fixture(params=["compiled", "torch"])
def products(request, monkeypatch):
    """The big products over all steps by the compiled gemm, then by torch.mm (matmul.big_products_by_torch)."""
    monkeypatch.setattr(settings, "matmul", request.param)
    return request.param


# every cell with every option it takes (only LSTM layers project)
CASES = [pytest.param(make, option, id=f"{make.__name__.lower()}-{option}") for make in (LSTM, GRU, RNN)
         for option in OPTIONS if make is LSTM or "proj_size" not in OPTIONS[option]]


@pytest.mark.parametrize("make, option", CASES)
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_the_engine_equals_the_reference_loop_in_float32(make, option, padded, training, products):
    """Outputs, final states and all gradients within 1e-5 of the loop's. A layer-normalised LSTM is too badly
    conditioned for that test of float32 rounding: LN's backward divides by the
    small spread of c' at the first steps, and both paths land 1e-6 to 5e-5 (relative) from the float64 result,
    now one closer, now the other. There the engine's relative error must be under 1e-5 or within 4 times the
    loop's."""
    torch.manual_seed(0)
    specs = [make(16, **OPTIONS[option]), make(24, **OPTIONS[option])]
    engine = StackedRNN(5, layers=specs).train(training)
    loop = StackedRNN(5, layers=specs, fused=False).train(training)
    exact = StackedRNN(5, layers=specs, fused=False).double().train(training)
    loop.load_state_dict(engine.state_dict())
    exact.load_state_dict(engine.state_dict())
    x = torch.randn(9, 4, 5)
    lengths = torch.tensor([9, 4, 6, 1]) if padded else None

    (out_e, grads_e), (out_l, grads_l) = (_outputs_and_grads(m, x, lengths) for m in (engine, loop))
    out_x, grads_x = _outputs_and_grads(exact, x.double(), lengths)

    def error(tensors):  # the largest relative error, in norm, of any output or gradient
        return max(((a.double() - b).norm() / b.norm().clamp(min=1e-12)).item()
                   for a, b in zip(tensors, [*out_x, *grads_x]))

    engine_error, loop_error = error([*out_e, *grads_e]), error([*out_l, *grads_l])
    if not (make is LSTM and OPTIONS[option].get("layer_norm")):
        for a, b in zip([*out_e, *grads_e], [*out_l, *grads_l]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert engine_error <= max(1e-5, 4 * loop_error), (engine_error, loop_error)


def test_such_layers_run_the_engine_and_fused_false_runs_the_loop():
    x = torch.randn(4, 2, 3)
    engine_out = StackedRNN(3, layers=[LSTM(5, zoneout=0.1)])(x)[0]
    loop_out = StackedRNN(3, layers=[LSTM(5, zoneout=0.1)], fused=False)(x)[0]
    assert type(engine_out.grad_fn).__name__ == "_RecurrenceBackward"
    assert type(loop_out.grad_fn).__name__ != "_RecurrenceBackward"


@pytest.mark.parametrize("layers, residual", [
    ([LSTM(3, layer_norm=True), LSTM(3, layer_norm=True, bidirectional=True)], False),
    ([GRU(3, layer_norm=True, zoneout=0.3), GRU(4, recurrent_dropout=0.4, bidirectional=True)], True),
    ([RNN(3, layer_norm=True, recurrent_dropout=0.3), LSTM(3, zoneout=(0.2, 0.4), layer_norm=True)], True),
    ([RNN(3, "relu", zoneout=0.2), LSTM(4, recurrent_dropout=0.2, zoneout=0.1)], 2),
    ([LSTM(4, proj_size=2, layer_norm=True, zoneout=(0.2, 0.3), recurrent_dropout=0.3, bidirectional=True),
      LSTM(3, proj_size=1, zoneout=0.2)], True),
])
def test_gradcheck_of_every_engine_path_in_float64(layers, residual, products):
    """Layer norm (of W_ih x, W_hh h and c), zoneout, recurrent dropout with fixed masks, residual connections
    (with a projection where sizes differ), LSTM projections (proj_size), both directions and padding; every
    parameter and the input."""
    torch.manual_seed(1)
    stack = StackedRNN(4, layers=layers, residual=residual).double().train()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    assert stack_gradcheck(stack, x, torch.tensor([5, 2, 4]))


def test_initial_states_get_gradients_and_a_second_derivative_is_refused():
    stack = StackedRNN(3, layers=[LSTM(4, layer_norm=True)]).double()
    h0 = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda h, c: stack(x, [(h, c)])[0], (h0, c0), eps=1e-6, atol=1e-5)
    out = stack(x, [(h0, c0)])[0]
    v = torch.ones_like(out, requires_grad=True)
    (g,) = torch.autograd.grad(out, h0, v, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()


def test_bf16_autocast_runs_the_recurrence_in_bfloat16_and_returns_the_state_in_its_own_precision():
    torch.manual_seed(2)
    specs = [LSTM(8, zoneout=0.1), GRU(8, recurrent_dropout=0.2)]  # both run the engine, on bfloat16 projections
    stack = StackedRNN(3, layers=specs).train()
    x = torch.randn(6, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = stack(x)
    assert out.dtype == torch.bfloat16
    # the carried state keeps the precision it came in: float32 zeros in, float32 out
    assert [t.dtype for t in (*state[0], state[1])] == [torch.float32] * 3
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in stack.parameters())
    stack.eval()
    with torch.no_grad():  # and close to float32: bfloat16 keeps about 3 significant digits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = stack(x)[0]
        torch.testing.assert_close(low.float(), stack(x)[0], atol=0.05, rtol=0.05)


@pytest.mark.parametrize("case", ["weight drop", "no bias", "one step", "one sequence", "zoneout 1"])
def test_edge_cases_equal_the_reference_loop(case):
    """Weight drop hands the engine a W_hh that is not a leaf; no biases; T = 1; B = 1; zoneout 1 keeps every
    unit's initial value, so the cells' weights get zero gradients and the output is the initial state."""
    options = {"weight drop": dict(weight_drop=0.5, zoneout=0.1), "no bias": dict(bias=False, layer_norm=True),
               "one step": dict(zoneout=0.2), "one sequence": dict(recurrent_dropout=0.3, layer_norm=True),
               "zoneout 1": dict(zoneout=1.0)}[case]
    steps, batch = (1, 3) if case == "one step" else (5, 1) if case == "one sequence" else (5, 3)
    torch.manual_seed(4)
    specs = [LSTM(6, **options), GRU(5, **options), RNN(4, **options)]
    engine = StackedRNN(3, layers=specs).train()
    loop = StackedRNN(3, layers=specs, fused=False).train()
    loop.load_state_dict(engine.state_dict())
    x = torch.randn(steps, batch, 3)
    (out_e, grads_e), (out_l, grads_l) = (_outputs_and_grads(m, x, None) for m in (engine, loop))
    for a, b in zip([*out_e, *grads_e], [*out_l, *grads_l]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_what_backward_reads_is_freed_once_backward_has_run():
    """Everything saved for backward goes through save_for_backward: after backward, the graph node keeps no
    tensor alive (a caller holding the last output does not hold the whole pass's activations)."""
    stack = StackedRNN(3, layers=[LSTM(6, layer_norm=True, zoneout=0.2, proj_size=4)]).train()
    out, _ = stack(torch.randn(5, 2, 3))
    node = out.grad_fn
    assert type(node).__name__ == "_RecurrenceBackward"
    out.sum().backward()

    def tensors(obj):
        found = []
        for value in vars(obj).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            found += [v for v in items if isinstance(v, torch.Tensor)]
        return found

    assert tensors(node) == []
    assert all(t.requires_grad for t in tensors(node.math))  # only parameters: LN(c')'s gain and shift
    with pytest.raises(RuntimeError, match="second time"):
        node.saved_tensors


def test_the_engine_leaves_the_global_random_stream_alone():
    """Masks from the global generator must follow the seed alone, on the first pass of a process as on any
    other."""
    stack = StackedRNN(3, layers=[LSTM(4, zoneout=0.5), LSTM(4, zoneout=0.5)]).train()
    x = torch.randn(5, 2, 3)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append(stack(x)[0])
    torch.testing.assert_close(runs[0], runs[1], atol=0, rtol=0)


def test_backward_twice_with_retain_graph_gives_the_same_gradients():
    """The engine overwrites its saved gates with derivative coefficients on the first backward: a second one
    (retain_graph) must reuse them, not recompute from what was overwritten."""
    torch.manual_seed(3)
    stack = StackedRNN(3, layers=[LSTM(5, layer_norm=True, zoneout=0.2), GRU(4, layer_norm=True)]).train()
    out, _ = stack(torch.randn(6, 2, 3), generator=torch.Generator().manual_seed(1))
    first = torch.autograd.grad(out.sum(), list(stack.parameters()), retain_graph=True)
    second = torch.autograd.grad(out.sum(), list(stack.parameters()))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
