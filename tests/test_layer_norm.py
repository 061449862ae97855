"""Layer-normalised cells (Ba et al. 2016): gradients by gradcheck in float64, the equations checked by hand,
the identity at initialisation of the gains, the plan keeping other layers fused, the configs, and generation
agreeing with the full forward pass."""

import pytest
import torch

from stackrnn import GRU, LSTM, RNN, StackedRNN
from stackrnn.cells import LSTMCell
from stackrnn.errors import InputError
from stackrnn.models.lm import LanguageModel, ModelConfig
from stackrnn.config import from_options

from .conftest import stack_gradcheck


@pytest.mark.parametrize("layers", [
    [LSTM(3, layer_norm=True), LSTM(2, bidirectional=True, layer_norm=True)],
    [GRU(3, layer_norm=True, bidirectional=True)],
    [RNN(3, layer_norm=True), LSTM(3, layer_norm=True, zoneout=0.2, recurrent_dropout=0.3)],
])
def test_gradcheck_in_float64_for_inputs_and_every_parameter(layers):
    torch.manual_seed(0)
    stack = StackedRNN(4, layers=layers).double().train()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 3, 4])
    assert any(".norm_" in n for n, _ in stack.named_parameters())
    assert stack_gradcheck(stack, x, lengths)


def test_the_lstm_step_is_the_layer_normalised_equations():
    torch.manual_seed(1)
    cell = LSTMCell(3, 4, layer_norm=True)
    with torch.no_grad():
        for p in (cell.norm_ih, cell.norm_hh, cell.norm_c.weight, cell.norm_c.bias):
            p.uniform_(0.5, 1.5)
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)

    def ln(z, gain):  # each gate's block normalised on its own
        blocks = z.view(2, 4, 4)
        mean, var = blocks.mean(-1, keepdim=True), blocks.var(-1, unbiased=False, keepdim=True)
        return ((blocks - mean) / torch.sqrt(var + 1e-5) * gain).view(2, 16)

    pre = ln(x @ cell.weight_ih.T, cell.norm_ih) + cell.bias_ih + ln(h @ cell.weight_hh.T, cell.norm_hh) + cell.bias_hh
    i, f, g, o = pre.chunk(4, -1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    c_norm = (c_new - c_new.mean(-1, keepdim=True)) / torch.sqrt(c_new.var(-1, unbiased=False, keepdim=True) + 1e-5)
    h_new = torch.sigmoid(o) * torch.tanh(c_norm * cell.norm_c.weight + cell.norm_c.bias)
    got = cell(x, (h, c))
    torch.testing.assert_close(got[1], c_new)
    torch.testing.assert_close(got[0], h_new)


def test_gains_start_at_one_and_shifts_at_zero_even_after_reset():
    cell = LSTMCell(3, 4, layer_norm=True)
    cell.reset_parameters()
    assert cell.norm_ih.eq(1).all() and cell.norm_hh.eq(1).all()
    assert cell.norm_c.weight.eq(1).all() and cell.norm_c.bias.eq(0).all()


def test_layer_norm_layers_run_the_loop_and_the_others_stay_fused():
    torch.manual_seed(2)
    mixed = StackedRNN(4, layers=[LSTM(5), LSTM(5, layer_norm=True), LSTM(5)]).eval()
    assert [s.fusable for s in mixed.specs] == [True, False, True]
    x = torch.randn(6, 2, 4)
    reference = StackedRNN(4, layers=mixed.specs, fused=False).eval()
    reference.load_state_dict(mixed.state_dict())
    torch.testing.assert_close(mixed(x)[0], reference(x)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="layer_norm"):
        StackedRNN(4, layers=[LSTM(5, layer_norm=True)] * 2).to_torch()
    with pytest.raises(ValueError, match="layer_norm"):
        LSTM(4, layer_norm=1)


def test_a_layer_normalised_language_model_generates_as_its_forward_pass_predicts():
    from stackrnn.generate import IncrementalDecoder

    cfg = from_options(ModelConfig, hidden_size=8, num_layers=2, embedding_size=6, layer_norm=True, residual=True)
    cfg.validate()
    torch.manual_seed(3)
    model = LanguageModel.from_config(cfg, 11).eval()
    assert all(s.layer_norm for s in model.rnn.specs)
    tokens = torch.randint(0, 11, (7, 2))
    logits, _, _ = model(tokens)
    decoder = IncrementalDecoder(model)
    step_logits, state = decoder.prime(tokens[:1], torch.tensor([1, 1]))
    torch.testing.assert_close(step_logits, logits[0], rtol=1e-5, atol=1e-6)
    for t in range(1, 7):
        step_logits, state = decoder.step(tokens[t], state)
        torch.testing.assert_close(step_logits, logits[t], rtol=1e-5, atol=1e-6)


def test_explicit_layer_tables_take_layer_norm_and_reject_bad_values():
    cfg = from_options(ModelConfig, layers=[{"cell": "gru", "hidden_size": 8, "layer_norm": True}, {"cell": "lstm", "hidden_size": 8}])
    assert [s.layer_norm for s in cfg.layer_specs()] == [True, False]
    with pytest.raises(InputError, match=r"model.stack.layers\[0\].layer_norm"):
        from_options(ModelConfig, layers=[{"cell": "gru", "hidden_size": 8, "layer_norm": "yes"}]).layer_specs()
