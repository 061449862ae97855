"""Highway-gated residual connections: the equation, gradients in float64, padding, initial carry, configs,
and generation agreeing with the full forward pass."""

import pytest
import torch

from stackrnn import GRU, LSTM, StackedRNN
from stackrnn.errors import InputError
from stackrnn.models.lm import LanguageModel, ModelConfig
from stackrnn.config import from_options


def test_a_highway_layer_mixes_its_output_and_its_projected_input_by_a_learned_gate():
    torch.manual_seed(0)
    stack = StackedRNN(3, layers=[LSTM(4), GRU(5)], residual=True, highway=True).eval()
    x = torch.randn(6, 2, 3)
    out, _, (below, top) = stack(x, return_all_layers=True)
    plain = StackedRNN(3, layers=[LSTM(4), GRU(5)])
    plain.load_state_dict({k: v for k, v in stack.state_dict().items() if k.startswith("layers.")})
    _, _, (_, h) = plain(x, return_all_layers=True)  # the GRU's own output, before any connection
    g = torch.sigmoid(stack.highway_gates["1"](below))
    torch.testing.assert_close(top, g * h + (1 - g) * stack.residual_projections["1"](below))
    assert stack.highway_gates["1"].bias.eq(-1).all()  # a new stack leans towards carrying its input


def test_gradcheck_and_padding():
    torch.manual_seed(1)
    stack = StackedRNN(3, layers=[LSTM(4, bidirectional=True), LSTM(4), LSTM(4)], residual=True, highway=True).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2])
    assert torch.autograd.gradcheck(lambda x: stack(x, lengths=lengths)[0], (x,))
    out, _ = stack(x, lengths=lengths)
    assert out[2:, 1].eq(0).all()  # padded steps stay zero
    alone, _ = stack(x[:2, 1:], lengths=lengths[1:])
    torch.testing.assert_close(out[:2, 1], alone[:, 0])


def test_highway_without_residual_connections_is_refused():
    with pytest.raises(ValueError, match="highway"):
        StackedRNN(3, 4, num_layers=2, highway=True)
    with pytest.raises(InputError, match="model.stack.highway"):
        from_options(ModelConfig, highway=True).validate()


def test_a_highway_language_model_generates_as_its_forward_pass_predicts():
    from stackrnn.generate import IncrementalDecoder

    cfg = from_options(ModelConfig, hidden_size=8, num_layers=3, embedding_size=6, residual=True, highway=True)
    cfg.validate()
    torch.manual_seed(2)
    model = LanguageModel.from_config(cfg, 11).eval()
    tokens = torch.randint(0, 11, (6, 2))
    logits, _, _ = model(tokens)
    decoder = IncrementalDecoder(model)
    step_logits, state = decoder.prime(tokens[:1], torch.tensor([1, 1]))
    for t in range(1, 6):
        step_logits, state = decoder.step(tokens[t], state)
        torch.testing.assert_close(step_logits, logits[t], rtol=1e-5, atol=1e-6)
