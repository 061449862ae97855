"""Every layer's states at every step (StackedRNN(..., return_states=True)): they are the stack's own outputs and
final states, for every cell, both directions and padded batches; and asking for them changes nothing else."""

import pytest
import torch

from stackrnn import GRU, LSTM, RNN, StackedRNN


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_recorded_states_are_the_stacks_own_outputs_and_final_states(bidirectional):
    torch.manual_seed(0)
    rnn = StackedRNN(5, layers=[LSTM(6, bidirectional=bidirectional), GRU(4, bidirectional=bidirectional), RNN(3)]).eval()
    x, lengths = torch.randn(7, 3, 5), torch.tensor([7, 4, 2])
    out, finals, layer_outputs = rnn(x, lengths=lengths, return_all_layers=True)
    out2, finals2, layer_outputs2, traces = rnn(x, lengths=lengths, return_all_layers=True, return_states=True)
    torch.testing.assert_close(out2, out)  # the fused run and the recorded loop agree
    assert len(traces) == 3 and [t.gate_names for t in traces] == [("input", "forget", "output"), ("reset", "update"), ()]
    for trace, output, final in zip(traces, layer_outputs, finals):
        k = trace.h.shape[2]
        valid = (torch.arange(7)[:, None] < lengths[None, :])[..., None]  # (T, B, 1)
        # at valid steps the recorded h of each direction is the layer's output there
        torch.testing.assert_close(torch.where(valid, trace.h.flatten(2), 0.0), output)
        h_final = final[0] if isinstance(final, tuple) else final  # (K, B, H)
        for b, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(trace.h[n - 1, b, 0], h_final[0, b])  # forward: the last valid step
            if k == 2:
                torch.testing.assert_close(trace.h[0, b, 1], h_final[1, b])  # reverse: step 0
            if isinstance(final, tuple):
                torch.testing.assert_close(trace.c[n - 1, b, 0], final[1][0, b])
    assert traces[0].gates.shape == (7, 3, 2 if bidirectional else 1, 3 * 6)
    assert traces[0].gates.min() >= 0 and traces[0].gates.max() <= 1 and traces[2].gates is None


def test_the_gates_recorded_are_the_ones_the_step_used():
    torch.manual_seed(1)
    rnn = StackedRNN(3, 4, cell="lstm").eval()
    x = torch.randn(2, 1, 3)
    _, _, (trace,) = rnn(x, return_states=True)
    cell = rnn.layers[0].cell
    i, f, g, o = cell.project_input(x[1]).add(cell.project_hidden(trace.h[0, :, 0])).chunk(4, -1)
    torch.testing.assert_close(trace.gates[1, :, 0], torch.sigmoid(torch.cat([i, f, o], -1)))
    torch.testing.assert_close(trace.c[1, :, 0], torch.sigmoid(f) * trace.c[0, :, 0] + torch.sigmoid(i) * torch.tanh(g))
