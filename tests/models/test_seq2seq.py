"""Seq2Seq and its attention: shapes, masking, padding invariance, the batched paths against the step-by-step
ones, the bridge across depths and sizes, and bad configurations."""

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from stackrnn.errors import InputError
from stackrnn.layers import LayerSpec
from stackrnn.models.attention import Attention
from stackrnn.models.seq2seq import Seq2Seq, Seq2SeqConfig
from stackrnn.config import from_options

V_SRC, V_TGT = 11, 13


def _model(attention="general", input_feed=True, bridge="linear", encoder=None, decoder=None, **kw) -> Seq2Seq:
    torch.manual_seed(0)
    encoder = encoder or [LayerSpec("lstm", 6, True), LayerSpec("gru", 5, True)]
    decoder = decoder or [LayerSpec("lstm", 7), LayerSpec("gru", 8), LayerSpec("lstm", 8)]
    return Seq2Seq(V_SRC, V_TGT, encoder, decoder, 9, attention=attention, input_feed=input_feed, bridge=bridge,
                   **kw).eval()


def _batch(lengths, target_lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = [torch.randint(1, V_SRC, (n,), generator=g) for n in lengths]
    tgt = [torch.randint(1, V_TGT, (n,), generator=g) for n in target_lengths]
    return pad_sequence(src), torch.tensor(lengths), pad_sequence(tgt)


MODES = [("general", True), ("dot", True), ("additive", True), ("general", False), ("additive", False), ("none", False)]


@pytest.mark.parametrize("attention,feed", MODES)
def test_shapes_loss_and_every_parameter_learns(attention, feed):
    model = _model(attention, feed, decoder=[LayerSpec("lstm", 10), LayerSpec("lstm", 10)]).train()
    src, lengths, tgt = _batch([5, 3, 4], [4, 6, 2])
    logits, loss, weights = model(src, lengths, tgt, tgt, return_attention=True)
    assert logits.shape == (6, 3, V_TGT) and loss.dim() == 0
    assert (weights is None) == (attention == "none")
    if weights is not None:
        assert weights.shape == (6, 5, 3)
        torch.testing.assert_close(weights.sum(1), torch.ones(6, 3))
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []


def test_attention_gives_padded_steps_exactly_zero_weight():
    for kind in ("dot", "general", "additive"):
        att = Attention(kind, 4, 4)
        memory = torch.randn(5, 2, 4)
        mask = torch.tensor([[True, True]] * 3 + [[True, False]] * 2)  # sequence 2 has 3 steps
        context, weights = att(torch.randn(2, 4), att.keys(memory), memory, mask)
        assert weights[3:, 1].eq(0).all() and context.shape == (2, 4)
        torch.testing.assert_close(context[1], (weights[:3, 1, None] * memory[:3, 1]).sum(0))


def test_scaled_attention_divides_dot_and_general_scores_by_the_root_of_the_query_size():
    """scaled=True is the unscaled attention with its query divided by sqrt(Q): the same weights as scores / sqrt(Q);
    the additive score, which learns its own scale, is left as it is."""
    torch.manual_seed(0)
    memory, query = torch.randn(5, 2, 4) * 3, torch.randn(3, 2, 4) * 3
    mask = torch.tensor([[True, True]] * 3 + [[True, False]] * 2)
    for kind in ("dot", "general"):
        plain, scaled = Attention(kind, 4, 4), Attention(kind, 4, 4, scaled=True)
        scaled.load_state_dict(plain.state_dict())
        _, want = plain(query / 2, plain.keys(memory), memory, mask)
        _, got = scaled(query, scaled.keys(memory), memory, mask)
        torch.testing.assert_close(got, want)
        assert "scaled" in repr(scaled)
    additive = Attention("additive", 4, 4, scaled=True)
    assert additive.scale is None


def test_scaled_attention_is_a_config_option():
    cfg = from_options(Seq2SeqConfig, scaled_attention=True, encoder_hidden_size=4, decoder_hidden_size=4,
                       decoder_num_layers=1, embedding_size=4)
    model = Seq2Seq.from_config(cfg, V_SRC, V_TGT)
    assert model.attention.scale == pytest.approx(0.5)
    assert Seq2Seq.from_config(from_options(Seq2SeqConfig, scaled_attention=False), V_SRC, V_TGT).attention.scale is None


@pytest.mark.parametrize("attention,feed", MODES)
def test_a_pair_gives_the_same_logits_alone_and_in_a_padded_batch(attention, feed):
    model = _model(attention, feed, decoder=[LayerSpec("lstm", 10), LayerSpec("gru", 10)])
    src, lengths, tgt = _batch([6, 2, 4], [3, 5, 2], seed=1)
    batched, _ = model(src, lengths, tgt)
    for b, (n, m) in enumerate(zip([6, 2, 4], [3, 5, 2])):
        alone, _ = model(src[:n, b : b + 1], lengths[b : b + 1], tgt[:m, b : b + 1])
        torch.testing.assert_close(batched[:m, b], alone[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention,feed", MODES)
def test_teacher_forced_forward_equals_one_step_at_a_time(attention, feed):
    """What training computes is what decoding computes: the incremental step reproduces the full pass."""
    model = _model(attention, feed, decoder=[LayerSpec("lstm", 10), LayerSpec("lstm", 10)], decoder_residual=2)
    src, lengths, tgt = _batch([5, 3], [4, 4], seed=2)
    full, _ = model(src, lengths, tgt)
    mem, state, feed_vec = model.encode(src, lengths)
    for t in range(tgt.shape[0]):
        logits, state, feed_vec, _ = model.step(tgt[t], mem, state, feed_vec)
        torch.testing.assert_close(logits, full[t], rtol=1e-5, atol=1e-6)


def test_the_bridge_joins_stacks_of_other_depths_and_sizes():
    model = _model(bridge="linear")  # 2 bidirectional layers (LSTM 6, GRU 5) -> 3 layers (LSTM 7, GRU 8, LSTM 8)
    src, lengths, _ = _batch([4, 2], [1, 1])
    _, state, feed = model.encode(src, lengths)
    assert [s[0].shape if isinstance(s, tuple) else s.shape for s in state] == [(1, 2, 7), (1, 2, 8), (1, 2, 8)]
    assert isinstance(state[0], tuple) and not isinstance(state[1], tuple) and feed.shape == (2, 8)
    assert model.bridge.in_features == 2 * 6 * 2 + 2 * 5  # h and c of the bidirectional LSTM, h of the GRU
    _, zeros, _ = _model(bridge="zero").encode(src, lengths)
    assert all(t.eq(0).all() for s in zeros for t in (s if isinstance(s, tuple) else (s,)))


def test_the_bridge_reads_each_sequences_last_valid_step():
    model = _model()
    src, lengths, _ = _batch([5, 2], [1, 1], seed=3)
    _, state, _ = model.encode(src, lengths)
    _, alone, _ = model.encode(src[:2, 1:], lengths[1:])
    torch.testing.assert_close(state[0][0][:, 1], alone[0][0][:, 0])


def test_config_builds_the_model_it_describes():
    cfg = from_options(Seq2SeqConfig, embedding_size=8, encoder_hidden_size=6, encoder_num_layers=2, decoder_hidden_size=10,
                        decoder_num_layers=4, decoder_residual=3)
    cfg.validate()
    model = Seq2Seq.from_config(cfg, 20, 30)
    assert [s.bidirectional for s in model.encoder.specs] == [True, True]
    assert len(model.decoder.specs) == 4 and model.decoder.residual_from == 3
    assert model.decoder.input_size == 8 + 10  # the embedding and the fed attentional vector


@pytest.mark.parametrize("changes,named", [
    ({"attention": "dot"}, "model.attention"),  # decoder 10 vs bidirectional encoder 2 x 6
    ({"attention": "none"}, "model.input_feed"),
    ({"dropout": 1.0}, "model.dropout"),
    ({"label_smoothing": -0.1}, "model.label_smoothing"),
    ({"decoder_layers": [{"cell": "lstm", "hidden_size": 8, "bidirectional": True}]}, "model.decoder.layers[0]"),
    ({"decoder_layers": [{"cell": "lstm", "hidden_size": 8, "weight_drop": 0.3}]}, "model.decoder.layers[0]"),
    ({"encoder_residual": 5}, "model.encoder.residual"),
    ({"decoder_num_layers": 0}, "model.decoder.num_layers"),
    ({"encoder_layers": []}, "model.encoder.layers"),
])
def test_bad_configs_name_the_key(changes, named):
    with pytest.raises(InputError, match=named.replace("[", r"\[").replace("]", r"\]")):
        from_options(Seq2SeqConfig, embedding_size=8, encoder_hidden_size=6, decoder_hidden_size=10, **changes)
