"""The options inside a layer's recurrence, one object each, and the one entry point that runs a direction
(stackrnn/recurrence.py)."""

import torch

from stackrnn import GRU, LSTM
from stackrnn.cells import make_cell
from stackrnn.recurrence import LayerNorm, Pass, Recurrence, RecurrentDropout, Zoneout, run_direction


def test_a_spec_gives_one_object_per_option_and_none_without():
    assert not LSTM(4).recurrence and LSTM(4).fusable
    both = LSTM(4, zoneout=(0.1, 0.2), recurrent_dropout=0.3, layer_norm=True).recurrence
    assert both == Recurrence(Zoneout(0.1, 0.2), RecurrentDropout(0.3), LayerNorm())
    assert GRU(4, zoneout=0.1).recurrence.zoneout == Zoneout(0.1, 0.0)  # a GRU has no c to zone out
    assert not GRU(4, zoneout=(0.0, 0.3)).recurrence


def test_a_pass_draws_recurrent_dropout_in_training_only():
    cell, x = make_cell("lstm", 3, 5, True, False, 0), torch.randn(4, 2, 3)
    options = Recurrence(recurrent_dropout=RecurrentDropout(0.5))
    assert options.sample(cell, x, False).h_mask is None
    h_mask = options.sample(cell, x, True, generator=torch.Generator().manual_seed(0)).h_mask
    assert h_mask.shape == (2, 5) and set(h_mask.unique().tolist()) <= {0.0, 2.0}


def test_run_direction_picks_the_engine_or_the_loop_with_the_same_results():
    torch.manual_seed(0)
    cell = make_cell("lstm", 3, 5, True, True, 0)
    x, state = torch.randn(6, 2, 3), (torch.randn(2, 5), torch.randn(2, 5))
    mask = torch.tensor([[True, True]] * 4 + [[True, False]] * 2).unsqueeze(-1)
    options = Recurrence(Zoneout(0.3, 0.2)).sample(cell, x, True, generator=None)
    runs = []
    for fast in (False, True):
        options.generator = torch.Generator().manual_seed(4)  # the same masks for both paths
        out, (h, c) = run_direction(cell, x, state, mask, True, options, fast=fast)
        runs.append([out, h, c, *torch.autograd.grad(out.sum() + h.sum() + c.sum(), list(cell.parameters()))])
    assert "Recurrence" in type(runs[1][0].grad_fn).__name__ and "Recurrence" not in type(runs[0][0].grad_fn).__name__
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    record = []
    run_direction(cell, x, state, mask, False, Pass(), fast=True, record=record)  # a record needs the loop
    assert [t for t, _, _ in record] == list(range(6))
