"""SequenceClassifier: padding never changes a prediction, every pooling against a hand computation, the losses
against torch's, a tiny model that learns a rule, pretrained embeddings frozen or tuned, and config errors."""

import pytest
import torch
from torch import nn

from stackrnn import GRU, LSTM, SequenceClassifier
from stackrnn.config import from_dict, from_options
from stackrnn.errors import InputError
from stackrnn.models.classifier import POOLINGS, ClassifierConfig

V = 12


def _model(bidirectional=False, **kw):
    torch.manual_seed(0)
    layers = [LSTM(6, bidirectional=bidirectional), GRU(5, bidirectional=bidirectional)]
    return SequenceClassifier(V, 3, layers, 4, **kw)


def _batch(*sentences):
    """Right-padded (T, B) ids with pad 0, and the lengths (B,)."""
    lengths = torch.tensor([len(s) for s in sentences])
    x = torch.zeros(int(lengths.max()), len(sentences), dtype=torch.long)
    for b, s in enumerate(sentences):
        x[: len(s), b] = torch.tensor(s)
    return x, lengths


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_sentence_gets_the_same_probabilities_alone_and_in_a_padded_batch(bidirectional, pooling, fused):
    model = _model(bidirectional, pooling=pooling, head_hidden=7, residual=True).double().eval()
    model.rnn.fused = fused
    sentence = [3, 1, 4, 1, 5]
    alone = model.probabilities(model(*_batch(sentence))[0])
    x, lengths = _batch([2, 7, 1, 8, 2, 8, 1, 8, 2], sentence, [9, 9])
    batched = model.probabilities(model(x, lengths)[0])
    torch.testing.assert_close(batched[1:2], alone, atol=1e-6, rtol=0)
    # and in float32, the default, within the same tolerance
    model.float()
    torch.testing.assert_close(model.probabilities(model(x, lengths)[0])[1:2], alone.float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_pooling_is_each_directions_last_state(bidirectional):
    model = _model(bidirectional, pooling="last").eval()
    x, lengths = _batch([1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11])
    hidden, state = model.rnn(model.embed(x), lengths=lengths)  # (T, B, K*5); state[-1]: GRU h (K, B, 5)
    pooled, _ = model.pool(hidden, lengths)
    b = torch.arange(3)
    forward = hidden[lengths - 1, b, :5]
    expected = torch.cat([forward, hidden[0, :, 5:]], dim=-1) if bidirectional else forward
    torch.testing.assert_close(pooled, expected, atol=0, rtol=0)
    # which is torch.nn's h_n of the top layer: forward final state, then the reverse one
    torch.testing.assert_close(pooled, torch.cat(list(state[-1]), dim=-1), atol=1e-6, rtol=0)


def test_max_pooling_ignores_padding_even_when_every_value_is_negative():
    model = _model(pooling="max")
    hidden = -1.0 - torch.rand(4, 2, 5)  # (T, B, D) all below -1
    hidden[2:, 1] = 0.0  # the stack's zeros at the padded steps of sequence 1
    lengths = torch.tensor([4, 2])
    pooled, _ = model.pool(hidden, lengths)
    torch.testing.assert_close(pooled[0], hidden.amax(0)[0])
    torch.testing.assert_close(pooled[1], hidden[:2, 1].amax(0))
    assert (pooled < -1).all()


def test_mean_pooling_averages_valid_steps_only():
    model = _model(pooling="mean")
    hidden = torch.randn(5, 2, 5)
    pooled, _ = model.pool(hidden, torch.tensor([5, 3]))
    torch.testing.assert_close(pooled, torch.stack([hidden[:, 0].mean(0), hidden[:3, 1].mean(0)]))


def test_attention_weights_sum_to_one_over_valid_steps_and_pool_the_outputs():
    model = _model(True, pooling="attention").eval()
    x, lengths = _batch([1, 2, 3, 4, 5], [6, 7])
    logits, loss, weights = model(x, lengths, return_attention=True)
    assert loss is None and weights.shape == (5, 2)
    torch.testing.assert_close(weights.sum(0), torch.ones(2))
    assert (weights[2:, 1] == 0).all() and (weights[:2, 1] > 0).all()
    hidden, _ = model.rnn(model.embed(x), lengths=lengths)
    pooled = (weights[..., None] * hidden).sum(0)
    torch.testing.assert_close(logits, model.head(pooled))
    with pytest.raises(ValueError, match="return_attention"):
        _model(pooling="mean")(x, lengths, return_attention=True)


def test_binary_output_is_one_sigmoid_unit_with_binary_cross_entropy():
    torch.manual_seed(1)
    model = SequenceClassifier(V, 2, [GRU(6)], 4).eval()
    assert model.output == "sigmoid"
    x, lengths = _batch([1, 2, 3], [4, 5], [6])
    targets = torch.tensor([1, 0, 1])
    logits, loss = model(x, lengths, targets)
    assert logits.shape == (3, 1)
    torch.testing.assert_close(loss, nn.functional.binary_cross_entropy_with_logits(logits[:, 0], targets.float()))
    p = model.probabilities(logits)
    torch.testing.assert_close(p[:, 1], torch.sigmoid(logits[:, 0]))
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    assert torch.equal(model.predict(x, lengths), (logits[:, 0] > 0).long())


@pytest.mark.parametrize("num_classes, output", [(4, "auto"), (2, "softmax")])
def test_softmax_output_is_one_unit_per_class_with_cross_entropy(num_classes, output):
    torch.manual_seed(1)
    model = SequenceClassifier(V, num_classes, [LSTM(6)], 4, output=output, head_hidden=5).eval()
    x, lengths = _batch([1, 2, 3], [4, 5], [6])
    targets = torch.tensor([1, 0, num_classes - 1])
    logits, loss = model(x, lengths, targets)
    assert model.output == "softmax" and logits.shape == (3, num_classes)
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, targets))
    p = model.probabilities(logits)
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    assert torch.equal(model.predict(x, lengths), logits.argmax(1))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="output: 'sigmoid' has one unit and needs num_classes=2, got num_classes=3"):
        SequenceClassifier(V, 3, [GRU(4)], output="sigmoid")
    with pytest.raises(ValueError, match="num_classes: expected an integer >= 2, got 1"):
        SequenceClassifier(V, 1, [GRU(4)])
    with pytest.raises(ValueError, match="pooling: expected one of"):
        SequenceClassifier(V, 2, [GRU(4)], pooling="sum")
    with pytest.raises(ValueError, match=r"pad_id: expected a token id in \[0, 12\), got 12"):
        SequenceClassifier(V, 2, [GRU(4)], pad_id=V)
    with pytest.raises(ValueError, match=r"inputs: expected a 2-d tensor \(T, B\)"):
        SequenceClassifier(V, 2, [GRU(4)])(torch.zeros(3, 2, 1, dtype=torch.long))


def _rule_data(n, generator):
    """Sequences of ids 1..9 with lengths 2..12; the label says whether id 3 occurs anywhere."""
    sentences = [torch.randint(1, 10, (int(torch.randint(2, 13, (), generator=generator)),), generator=generator).tolist()
                 for _ in range(n)]
    return sentences, torch.tensor([int(3 in s) for s in sentences])


def test_a_tiny_model_learns_whether_a_token_occurs():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train, train_y = _rule_data(1024, g)
    test, test_y = _rule_data(256, g)
    assert 0.3 < train_y.float().mean() < 0.7  # no majority class to hide behind
    # "last" pooling: the answer must travel through the recurrence (it reaches 100% in 10-20 steps for seeds 0-5)
    model = SequenceClassifier(10, 2, [GRU(16, bidirectional=True)], 8, pooling="last")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for step in range(100):
        i = torch.randint(len(train), (32,), generator=g).tolist()
        _, loss = model(*_batch(*[train[j] for j in i]), train_y[i])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    assert (model.predict(*_batch(*test)) == test_y).float().mean() == 1.0


def test_frozen_pretrained_embeddings_stay_and_tuned_ones_move():
    vectors = torch.randn(V, 4)
    vectors[0] = 0.0
    x, lengths = _batch([1, 2, 3], [4, 5])
    for freeze in (True, False):
        model = _model()
        model.set_pretrained(vectors, freeze=freeze)
        torch.testing.assert_close(model.embedding.weight.detach(), vectors)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
        model(x, lengths, torch.tensor([0, 2]))[1].backward()
        optimizer.step()
        moved = not torch.equal(model.embedding.weight.detach(), vectors)
        assert moved != freeze
        assert torch.equal(model.embedding.weight[0].detach(), torch.zeros(4))  # padding gets no gradient


def test_set_pretrained_with_the_wrong_size_names_the_key_and_the_file():
    with pytest.raises(InputError, match=r"^model.embedding_size is 4 but the vectors in glove.txt have 100 "
                                         r"dimensions: set embedding_size = 100$"):
        _model().set_pretrained(torch.zeros(V, 100), source="glove.txt")
    with pytest.raises(ValueError, match="one row per word"):
        _model().set_pretrained(torch.zeros(V + 1, 4))


def test_config_builds_the_model_and_freezes_the_embedding():
    cfg = from_options(ClassifierConfig, embedding_size=8, layers=[{"cell": "lstm", "hidden_size": 6, "bidirectional": True},
                                                     {"cell": "gru", "hidden_size": 5, "weight_drop": 0.2}],
                           pooling="attention", head_hidden=4, pretrained_vectors="glove.txt", freeze_embeddings=True)
    cfg.validate()
    model = SequenceClassifier.from_config(cfg, vocab_size=20, num_classes=5, pad_id=1)
    assert [(s.cell, s.hidden_size, s.bidirectional, s.weight_drop) for s in model.rnn.specs] == \
        [("lstm", 6, True, 0.0), ("gru", 5, False, 0.2)]
    assert model.embedding.padding_idx == 1 and not model.embedding.weight.requires_grad
    assert model.output == "softmax" and model.head[-1].out_features == 5
    default = SequenceClassifier.from_config(ClassifierConfig(), vocab_size=20, num_classes=2)
    assert default.head[-1].out_features == 1 and default.embedding.weight.requires_grad
    assert [s.hidden_size for s in default.rnn.specs] == [128, 128]


@pytest.mark.parametrize("values, key", [
    (dict(embedding_size=0), "model.embedding_size"),
    (dict(num_layers=0), "model.stack.num_layers"),
    (dict(dropout=1.0), "model.stack.dropout"),
    (dict(head_dropout=-0.1), "model.head_dropout"),
    (dict(head_hidden=-1), "model.head_hidden"),
    (dict(pooling="sum"), "model.pooling"),
    (dict(output="tanh"), "model.output"),
    (dict(residual=5), "model.stack.residual"),
    (dict(layers=[]), "model.stack.layers"),
    (dict(layers=[{"cell": "lstm", "size": 4}]), r"model.stack.layers\[0\]"),
    (dict(layers=[{"cell": "gru", "hidden_size": 4}, {"cell": "xlstm", "hidden_size": 4}]), r"model.stack.layers\[1\].cell"),
    (dict(freeze_embeddings=True), "model.freeze_embeddings"),
    (dict(pretrained_vectors=" "), "model.pretrained_vectors"),
])
def test_config_errors_name_the_key(values, key):
    with pytest.raises(InputError, match=f"^{key}: .*") as e:
        from_dict(ClassifierConfig, values, "model")
    assert "\n" not in str(e.value)


def test_sigmoid_output_with_more_than_two_classes_is_a_config_error():
    with pytest.raises(InputError, match="^model.output: 'sigmoid' .* the data has 3: set output = 'softmax'"):
        SequenceClassifier.from_config(from_options(ClassifierConfig, output="sigmoid"), vocab_size=10, num_classes=3)
