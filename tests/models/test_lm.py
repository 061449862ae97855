import pytest
import torch

from stackrnn import GRU, LSTM
from stackrnn.errors import InputError
from stackrnn.models.lm import LanguageModel, ModelConfig
from stackrnn.config import from_options


def test_shapes_and_loss():
    model = LanguageModel(30, [LSTM(16), GRU(8)], embedding_size=12)
    x = torch.randint(30, (7, 4))
    logits, loss, state = model(x, x)
    assert logits.shape == (7, 4, 30)
    assert loss.shape == () and loss > 0
    assert len(state) == 2


def test_one_hot_input_equals_identity_embedding():
    torch.manual_seed(0)
    one_hot = LanguageModel(10, [LSTM(8)], embedding_size=0)
    embedded = LanguageModel(10, [LSTM(8)], embedding_size=10)
    state = {k: v for k, v in one_hot.state_dict().items()}
    state["embedding.weight"] = torch.eye(10)
    embedded.load_state_dict(state)
    x = torch.randint(10, (5, 3))
    torch.testing.assert_close(one_hot(x)[0], embedded(x)[0])


def test_tied_weights_share_one_matrix_and_project_when_sizes_differ():
    same = LanguageModel(50, [LSTM(16)], embedding_size=16, tie_weights=True)
    assert same.decoder.weight is same.embedding.weight and same.projection is None
    diff = LanguageModel(50, [LSTM(24)], embedding_size=16, tie_weights=True)
    assert diff.decoder.weight is diff.embedding.weight
    assert diff.projection.weight.shape == (16, 24)
    logits, _, _ = diff(torch.randint(50, (3, 2)))
    assert logits.shape == (3, 2, 50)


def test_init_range():
    model = LanguageModel(20, [LSTM(8), LSTM(8)], embedding_size=8, init_range=0.1)
    assert all(p.abs().max() <= 0.1 for p in model.parameters())


def test_config_builds_explicit_layers():
    cfg = from_options(ModelConfig, layers=[{"cell": "lstm", "hidden_size": 16}, {"cell": "gru", "hidden_size": 8}], embedding_size=4)
    cfg.validate()
    model = LanguageModel.from_config(cfg, 11)
    assert [s.cell for s in model.rnn.specs] == ["lstm", "gru"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(hidden_size=0), "model.stack.hidden_size"),
    (dict(num_layers=0), "model.stack.num_layers"),
    (dict(dropout=1.5), "model.stack.dropout"),
    (dict(tie_weights=True), "model.tie_weights"),
    (dict(layers=[{"cell": "lstm"}]), r"model.stack.layers\[0\]"),
    (dict(layers=[{"cell": "lsm", "hidden_size": 3}]), r"model.stack.layers\[0\].cell"),
    (dict(layers=[{"hidden_size": 3, "bidirectional": True}]), r"model.stack.layers\[0\]"),
])
def test_bad_model_config(kwargs, match):
    with pytest.raises(InputError, match=match):
        from_options(ModelConfig, **kwargs).validate()


def test_loss_ignores_padded_steps():
    torch.manual_seed(0)
    model = LanguageModel(12, [LSTM(8)], embedding_size=4)
    x, y = torch.randint(12, (6, 2)), torch.randint(12, (6, 2))
    _, alone, _ = model(x[:3, :1], y[:3, :1])
    garbage = y.clone()
    garbage[3:, 0] = 11
    _, padded, _ = model(x[:, :1], garbage[:, :1], lengths=torch.tensor([3]))
    torch.testing.assert_close(padded, alone)


def _awd(**kw):
    torch.manual_seed(0)
    return LanguageModel(30, [LSTM(12, weight_drop=0.5), LSTM(8)], embedding_size=8, tie_weights=True, **kw)


def test_ar_and_tar_penalties_follow_their_formulas():
    model = _awd(ar=2.0, tar=1.0)  # no dropout: AR sees the same output as TAR
    x = torch.randint(30, (6, 3))
    seen = {}
    model.rnn.register_forward_hook(lambda m, args, out: seen.update(h=out[0]))  # returns None: output unchanged
    model.train()
    _, loss, _ = model(x, x)
    h = seen["h"]  # (T, B, 8): the top layer's output
    expected = 2.0 * h.pow(2).mean() + 1.0 * (h[1:] - h[:-1]).pow(2).mean()
    torch.testing.assert_close(model.penalty(), expected)
    model.eval()
    _, eval_loss, _ = model(x, x)
    assert model.penalty() == 0.0  # activation regularisation is a training objective only
    torch.testing.assert_close(eval_loss, torch.nn.functional.cross_entropy(model(x)[0].reshape(-1, 30), x.reshape(-1)))


def test_embedding_dropout_drops_a_word_everywhere_it_occurs():
    model = _awd(embedding_dropout=0.5).train()
    x = torch.tensor([[3, 3, 3, 5, 5, 5]]).t()  # (T=6, B=1)
    emb = model.embed(x)  # (6, 1, 8)
    zero = (emb == 0).all(-1).squeeze(1)  # which steps lost their word
    assert zero[:3].unique().numel() == 1 and zero[3:].unique().numel() == 1  # the same decision per word


def test_variational_input_dropout_mask_is_constant_over_time():
    model = _awd(input_dropout=0.5, variational=True).train()
    x = torch.full((9, 4), 7)  # one word at every step: only the mask varies
    emb = model.embed(x)
    assert ((emb == 0) == (emb[0] == 0)).all()
    assert (emb == 0).any()


def test_bad_regulariser_settings():
    for kwargs, match in [(dict(weight_drop=1.0), "model.stack.weight_drop"), (dict(input_dropout=-0.1), "model.input_dropout"),
                          (dict(ar=-1.0), "model.ar"), (dict(residual=7), "model.stack.residual")]:
        with pytest.raises(InputError, match=match):
            from_options(ModelConfig, **kwargs).validate()
