"""LSTM projections (proj_size; LSTMP, Sak et al. 2014): against torch.nn.LSTM(..., proj_size=P) in outputs,
states and gradients, fused and looped; the equations by hand; mixed and regularised stacks gradchecked in float64;
torch.nn conversion; generation, classification and translation with projected layers; bad input."""

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from stackrnn import GRU, LSTM, LayerSpec, LSTMCell, StackedRNN
from stackrnn.errors import InputError
from stackrnn.models.classifier import ClassifierConfig, SequenceClassifier
from stackrnn.models.lm import LanguageModel, ModelConfig
from stackrnn.models.seq2seq import Seq2Seq, Seq2SeqConfig
from stackrnn.config import from_options

from .conftest import stack_gradcheck

T, B, D, H, P = 6, 3, 4, 5, 3

# oneDNN has no projected LSTM: torch falls back to its own implementation and says so, for nn.LSTM as for us
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


def _torch_run(ref: nn.LSTM, x, lengths):
    if lengths is None:
        return ref(x)
    out, state = ref(pack_padded_sequence(x, lengths, enforce_sorted=False))
    return pad_packed_sequence(out, total_length=T)[0], state


@pytest.mark.parametrize("bidirectional, with_lengths, fused, bias",
                         list(itertools.product([False, True], [False, True], [True, False], [True, False])))
def test_equals_torch_lstm_with_proj_size(bidirectional, with_lengths, fused, bias):
    torch.manual_seed(0)
    ref = nn.LSTM(D, H, 2, bias=bias, bidirectional=bidirectional, proj_size=P)
    stack = StackedRNN.from_torch(ref, fused=fused)
    assert stack._plan(fused, False) == ([(0, 2)] if fused else [(0, 1), (1, 2)])  # one kernel call, or the loop
    x = torch.randn(T, B, D)
    lengths = torch.tensor([T, 2, 1]) if with_lengths else None
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()

    out, state = stack(x_ours, lengths=lengths)
    ref_out, (h_n, c_n) = _torch_run(ref, x_ref, lengths)
    h, c = torch.cat([s[0] for s in state]), torch.cat([s[1] for s in state])
    k = 2 if bidirectional else 1
    assert out.shape == (T, B, k * P) and h.shape == (2 * k, B, P) and c.shape == (2 * k, B, H)
    for ours, theirs in ((out, ref_out), (h, h_n), (c, c_n)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    weights = torch.randn_like(out)
    ((out * weights).sum() + h.sum() + c.sum()).backward()
    ((ref_out * weights).sum() + h_n.sum() + c_n.sum()).backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=0)
    names = stack._torch_parameter_names()
    assert len(names) == len(ref._flat_weights_names) and sum("weight_hr" in n for n in names) == 2 * k
    for ours, theirs in zip(names, ref._flat_weights_names):
        assert ours.rsplit(".", 1)[1] == theirs.split("_l")[0]  # weight_hr beside weight_hr_l0, in torch's order
        torch.testing.assert_close(stack.get_parameter(ours).grad, getattr(ref, theirs).grad, atol=1e-5, rtol=0, msg=ours)


def test_the_cell_is_the_projected_equations_with_and_without_layer_norm():
    torch.manual_seed(1)
    for layer_norm in (False, True):
        cell = LSTMCell(3, 4, layer_norm=layer_norm, proj_size=2)
        assert cell.weight_hr.shape == (2, 4) and cell.weight_hh.shape == (16, 2) and cell.output_size == 2
        bound = 1 / math.sqrt(4)  # torch.nn's U(-1/sqrt(H), 1/sqrt(H)), W_hr included
        assert all(p.abs().max() <= bound for n, p in cell.named_parameters() if not n.startswith("norm_"))
        x, h, c = torch.randn(2, 3), torch.randn(2, 2), torch.randn(2, 4)
        i, f, g, o = (x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh).chunk(4, -1)
        if layer_norm:  # the gate blocks are normalised inside project_input/project_hidden: take them from there
            i, f, g, o = (cell.project_input(x) + cell.project_hidden(h)).chunk(4, -1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = (torch.sigmoid(o) * torch.tanh(cell.norm_c(c_new) if layer_norm else c_new)) @ cell.weight_hr.T
        got_h, got_c = cell(x, (h, c))
        torch.testing.assert_close(got_c, c_new)
        torch.testing.assert_close(got_h, h_new)
        zero_h, zero_c = cell.zero_state(5, dtype=torch.float32, device=torch.device("cpu"))
        assert zero_h.shape == (5, 2) and zero_c.shape == (5, 4)


MIXED = [LSTM(8, proj_size=3), GRU(5), LSTM(6, proj_size=2, bidirectional=True)]


def test_a_mixed_stack_has_the_right_shapes_and_its_paths_agree():
    torch.manual_seed(2)
    stack = StackedRNN(4, layers=MIXED).eval()
    assert [s.output_size for s in stack.specs] == [3, 5, 4] and stack.output_size == 4
    assert stack.layers[1].cell.weight_ih.shape == (15, 3) and stack.layers[2].cell.weight_ih.shape == (24, 5)
    x, lengths = torch.randn(7, 2, 4), torch.tensor([7, 4])
    out, state, traces = stack(x, lengths=lengths, return_states=True)
    shapes = [tuple(tuple(t.shape) for t in (s if isinstance(s, tuple) else (s,))) for s in state]
    assert out.shape == (7, 2, 4)
    assert shapes == [((1, 2, 3), (1, 2, 8)), ((1, 2, 5),), ((2, 2, 2), (2, 2, 6))]
    assert shapes == [tuple(tuple(t.shape) for t in (s if isinstance(s, tuple) else (s,))) for s in stack.zero_state(2)]
    assert traces[0].h.shape == (7, 2, 1, 3) and traces[0].c.shape == (7, 2, 1, 8) and traces[2].h.shape == (7, 2, 2, 2)
    loop = StackedRNN(4, layers=MIXED, fused=False).eval()
    loop.load_state_dict(stack.state_dict())
    fused_out, fused_state = stack(x, state, lengths)  # the state passed back in has the projected shapes
    loop_out, loop_state = loop(x, state, lengths)
    torch.testing.assert_close(fused_out, loop_out, atol=1e-6, rtol=0)
    for a, b in zip(fused_state, loop_state):
        for s, t in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            torch.testing.assert_close(s, t, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layers", [
    MIXED,
    [LSTM(4, proj_size=2, zoneout=(0.3, 0.2), recurrent_dropout=0.4),
     LSTM(3, proj_size=1, bidirectional=True, layer_norm=True, zoneout=0.25)],
])
def test_gradcheck_in_float64_with_projections(layers):
    torch.manual_seed(3)
    stack = StackedRNN(3, layers=layers).double().train()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert any(n.endswith("weight_hr") for n, _ in stack.named_parameters())
    assert stack_gradcheck(stack, x, torch.tensor([4, 3]))


def test_to_torch_and_back_keep_the_projection():
    torch.manual_seed(4)
    stack = StackedRNN(D, H, num_layers=2, bidirectional=True, batch_first=True, proj_size=P)
    ref = stack.to_torch()
    assert isinstance(ref, nn.LSTM) and ref.proj_size == P and ref.bidirectional and ref.batch_first
    x = torch.randn(B, T, D)
    torch.testing.assert_close(stack(x)[0], ref(x)[0], atol=1e-6, rtol=0)
    back = StackedRNN.from_torch(ref)
    assert [s.proj_size for s in back.specs] == [P, P]
    torch.testing.assert_close(back(x)[0], ref(x)[0], atol=1e-6, rtol=0)
    # layers of different projections run as separate kernel calls, and torch.nn cannot hold them
    two = StackedRNN(D, layers=[LSTM(H, proj_size=2), LSTM(H, proj_size=3), LSTM(H, proj_size=3)])
    assert two._plan(True, False) == [(0, 1), (1, 3)]
    with pytest.raises(ValueError, match="to_torch"):
        two.to_torch()


def test_a_projected_language_model_generates_as_its_forward_pass_predicts():
    from stackrnn.generate import IncrementalDecoder

    cfg = from_options(ModelConfig, hidden_size=8, num_layers=2, embedding_size=6, proj_size=3, zoneout=0.1, residual=True,
                      tie_weights=True)
    cfg.validate()
    torch.manual_seed(5)
    model = LanguageModel.from_config(cfg, 11).eval()
    assert [s.proj_size for s in model.rnn.specs] == [3, 3] and model.projection.in_features == 3  # 3 -> E = 6
    tokens = torch.randint(0, 11, (7, 2))
    logits, _, _ = model(tokens)
    decoder = IncrementalDecoder(model)
    step_logits, state = decoder.prime(tokens[:1], torch.tensor([1, 1]))
    assert state[0][0].shape == (2, 3) and state[0][1].shape == (2, 8)
    torch.testing.assert_close(step_logits, logits[0], rtol=1e-5, atol=1e-6)
    for t in range(1, 7):
        step_logits, state = decoder.step(tokens[t], state)
        torch.testing.assert_close(step_logits, logits[t], rtol=1e-5, atol=1e-6)
    # tied to an embedding of the projected size, the decoder reads the top layer directly
    same = LanguageModel.from_config(from_options(ModelConfig, hidden_size=8, num_layers=1, embedding_size=3, proj_size=3,
                                                 tie_weights=True), 11)
    assert same.projection is None and same.decoder.weight is same.embedding.weight


def test_last_pooling_reads_a_projected_bidirectional_top_layer():
    cfg = from_options(ClassifierConfig, embedding_size=4, hidden_size=6, num_layers=2, bidirectional=True, proj_size=2)
    cfg.validate()
    torch.manual_seed(6)
    model = SequenceClassifier.from_config(cfg, 12, 3).eval()
    x, lengths = torch.randint(1, 12, (5, 3)), torch.tensor([5, 2, 3])
    hidden, state = model.rnn(model.embed(x), lengths=lengths)  # (T, B, 2 * 2)
    pooled, _ = model.pool(hidden, lengths)
    # torch.nn's h_n of the top layer: forward final h, then the reverse one
    torch.testing.assert_close(pooled, torch.cat(list(state[-1][0]), dim=-1), atol=1e-6, rtol=0)


def test_a_seq2seq_with_projected_encoder_and_decoder_trains():
    from stackrnn.decode import beam_search, greedy_search

    torch.manual_seed(7)
    encoder = [LSTM(6, bidirectional=True, proj_size=4), GRU(5, bidirectional=True)]
    decoder = [LSTM(7, proj_size=3), LSTM(8, proj_size=5)]
    model = Seq2Seq(11, 13, encoder, decoder, 9, attention="general", input_feed=True)
    assert model.bridge.in_features == 2 * (4 + 6) + 2 * 5  # h (P) and c (H) of each direction, then the GRU's h
    assert model.bridge.out_features == (3 + 7) + (5 + 8) and model.feed_size == 5
    source, lengths = torch.randint(1, 11, (5, 3)), torch.tensor([5, 3, 4])
    target = torch.randint(1, 13, (4, 3))
    _, state, _ = model.encode(source, lengths)
    assert [tuple(t.shape for t in s) for s in state] == [((1, 3, 3), (1, 3, 7)), ((1, 3, 5), (1, 3, 8))]

    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(5):
        _, loss = model(source, lengths, target, target)
        loss.backward()
        assert all(p.grad is not None for n, p in model.named_parameters() if "weight_hr" in n)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    greedy = greedy_search(model, source, lengths, bos=1, eos=2, max_length=4)
    assert greedy == beam_search(model, source, lengths, beam=1, bos=1, eos=2, max_length=4)
    # and from a config: the per-stack options reach the specs
    cfg = from_options(Seq2SeqConfig, embedding_size=8, encoder_hidden_size=6, encoder_proj_size=4, decoder_hidden_size=10,
                        decoder_num_layers=2, decoder_proj_size=6)
    cfg.validate()
    assert [s.proj_size for s in cfg.encoder_specs()] == [4, 4] and [s.proj_size for s in cfg.decoder_specs()] == [6, 6]


@pytest.mark.parametrize("build, match", [
    (lambda: LSTM(5, proj_size=5), r"proj_size: expected an integer in \[0, hidden_size = 5\).*got 5"),
    (lambda: LSTM(5, proj_size=7), r"proj_size: .*hidden_size = 5.*got 7"),
    (lambda: LSTM(5, proj_size=-1), r"proj_size: .*hidden_size = 5.*got -1"),
    (lambda: LSTM(5, proj_size=2.0), r"proj_size: .*hidden_size = 5.*got 2\.0"),
    (lambda: LSTM(5, proj_size=True), r"proj_size: .*got True"),
    (lambda: LayerSpec("gru", 5, proj_size=2), r"proj_size: only LSTM layers .* proj_size=2 for a 'gru' layer"),
    (lambda: StackedRNN(4, 5, cell="rnn_tanh", proj_size=2), r"proj_size: only LSTM layers .* proj_size=2 .*'rnn_tanh'"),
    (lambda: StackedRNN(4, 5, proj_size=5), r"proj_size: .*hidden_size = 5.*got 5"),
    (lambda: StackedRNN(4, layers=[LSTM(5)], proj_size=2), r"proj_size: expected 0 when layers=.* got 2"),
    (lambda: LSTMCell(3, 4, proj_size=4), r"proj_size: .*hidden_size = 4.*got 4"),
])
def test_bad_proj_size_is_a_value_error_naming_it_and_the_values(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_a_state_of_the_unprojected_shape_is_refused():
    stack = StackedRNN(D, layers=[LSTM(H, proj_size=2)])
    x = torch.randn(T, B, D)
    with pytest.raises(ValueError, match=r"state\[0\]: expected an LSTM state pair \(h, c\) of shapes \(1, 3, 2\) "
                                         r"and \(1, 3, 5\).*got \(shape \(1, 3, 5\), shape \(1, 3, 5\)\)"):
        stack(x, state=[(torch.zeros(1, B, H), torch.zeros(1, B, H))])


@pytest.mark.parametrize("cfg, named", [
    (lambda: from_options(ModelConfig, hidden_size=8, proj_size=8), "model.stack.proj_size"),
    (lambda: from_options(ModelConfig, hidden_size=8, proj_size=-2), "model.stack.proj_size"),
    (lambda: from_options(ModelConfig, cell="gru", hidden_size=8, proj_size=2), "model.stack.proj_size"),
    (lambda: from_options(ModelConfig, proj_size=2, layers=[{"cell": "gru", "hidden_size": 8}]), "model.stack.proj_size"),
    (lambda: from_options(ModelConfig, layers=[{"cell": "lstm", "hidden_size": 4, "proj_size": 4}]), r"model.stack.layers\[0\].proj_size"),
    (lambda: from_options(ModelConfig, layers=[{"cell": "lstm", "hidden_size": 4}, {"cell": "gru", "hidden_size": 4, "proj_size": 2}]),
     r"model.stack.layers\[1\].proj_size"),
    (lambda: from_options(ClassifierConfig, hidden_size=6, proj_size=6), "model.stack.proj_size"),
    (lambda: from_options(Seq2SeqConfig, encoder_hidden_size=6, encoder_proj_size=6), "model.encoder.proj_size"),
    (lambda: from_options(Seq2SeqConfig, decoder_cell="gru", decoder_proj_size=3), "model.decoder.proj_size"),
])
def test_config_errors_name_the_key(cfg, named):
    with pytest.raises(InputError, match=rf"^{named}: "):
        cfg().validate()


def test_the_config_projects_the_lstm_tables_that_do_not_say_otherwise():
    cfg = from_options(ModelConfig, proj_size=3, layers=[{"cell": "lstm", "hidden_size": 8}, {"cell": "gru", "hidden_size": 6},
                                           {"cell": "lstm", "hidden_size": 8, "proj_size": 2},
                                           {"cell": "lstm", "hidden_size": 8, "proj_size": 0}])
    cfg.validate()
    assert [s.proj_size for s in cfg.layer_specs()] == [3, 0, 2, 0]
    assert [s.output_size for s in cfg.layer_specs()] == [3, 6, 2, 8]
