import pytest
import torch

from stackrnn import GRU, LSTM
from stackrnn.data.tokenizers import Tokenizer
from stackrnn.errors import InputError
from stackrnn.generate import IncrementalDecoder, generate, sample
from stackrnn.models.lm import LanguageModel

TEXT = "the time traveller for so it will be convenient to speak of him\n" * 3


@pytest.fixture
def lm():
    torch.manual_seed(0)
    tok = Tokenizer.fit(TEXT)
    return LanguageModel(len(tok), [LSTM(16), GRU(12), LSTM(8)], embedding_size=6).eval(), tok


def test_incremental_steps_equal_a_full_forward(lm):
    model, tok = lm
    ids = torch.tensor(tok.encode("the time traveller")).unsqueeze(1)  # (T, 1)
    full, _, _ = model(ids)
    dec = IncrementalDecoder(model)
    logits, state = dec.prime(ids[:3], torch.tensor([3]))
    torch.testing.assert_close(logits, full[2], atol=1e-5, rtol=0)
    for t in range(3, ids.shape[0]):
        logits, state = dec.step(ids[t], state)
        torch.testing.assert_close(logits, full[t], atol=1e-5, rtol=0)


def test_one_hot_model_decodes_the_same_way():
    torch.manual_seed(0)
    tok = Tokenizer.fit(TEXT)
    model = LanguageModel(len(tok), [LSTM(16), LSTM(16)], embedding_size=0).eval()
    ids = torch.tensor(tok.encode("time")).unsqueeze(1)
    full, _, _ = model(ids)
    dec = IncrementalDecoder(model)
    logits, state = dec.prime(ids[:1], torch.tensor([1]))
    for t in range(1, 4):
        logits, state = dec.step(ids[t], state)
        torch.testing.assert_close(logits, full[t], atol=1e-5, rtol=0)


def test_batched_prefixes_equal_one_at_a_time(lm):
    model, tok = lm
    prefixes = ["the time traveller", "so", "him"]
    together = generate(model, tok, prefixes, 30, temperature=0)
    alone = [generate(model, tok, [p], 30, temperature=0)[0] for p in prefixes]
    assert together == alone
    assert all(t.startswith(p) and len(t) == len(p) + 30 for t, p in zip(together, prefixes))


def test_same_seed_same_text(lm):
    model, tok = lm
    a = generate(model, tok, ["the "], 40, temperature=0.8, seed=5)
    b = generate(model, tok, ["the "], 40, temperature=0.8, seed=5)
    c = generate(model, tok, ["the "], 40, temperature=0.8, seed=6)
    assert a == b and a != c


def test_sampling_rules():
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0]])
    assert sample(logits, temperature=0).item() == 1
    g = torch.Generator().manual_seed(0)
    assert {sample(logits, top_k=1, generator=g).item() for _ in range(20)} == {1}
    assert {sample(logits, top_p=0.1, generator=g).item() for _ in range(20)} == {1}
    # top-k 2 keeps exactly the two best tokens
    assert {sample(logits, top_k=2, generator=g).item() for _ in range(200)} == {1, 2}
    # top-p: p(1)=0.66, p(2)=0.24: 0.8 needs both, never the rest
    assert {sample(logits, top_p=0.8, generator=g).item() for _ in range(200)} == {1, 2}


def test_prefix_outside_the_vocabulary(lm):
    model, tok = lm
    with pytest.raises(InputError, match=r"3 token\(s\) not in the model's vocabulary \('Q', 'Z', 'u'\)"):
        generate(model, tok, ["Zebra Quest"], 5)


@pytest.mark.parametrize("kwargs, match", [(dict(length=0), "--length"), (dict(temperature=-1), "--temperature"),
                                           (dict(top_k=-2), "--top-k"), (dict(top_p=0.0), "--top-p")])
def test_bad_sampling_arguments(lm, kwargs, match):
    model, tok = lm
    args = {"length": 5, **kwargs}
    with pytest.raises(InputError, match=match):
        generate(model, tok, ["the"], **args)


def test_sampler_draws_from_the_softmax_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0, 0.5]]).repeat(20_000, 1)
    g = torch.Generator().manual_seed(0)
    draws = sample(logits, temperature=0.7, generator=g)
    freq = torch.bincount(draws, minlength=5).double() / draws.numel()
    expected = torch.softmax(logits[0].double() / 0.7, dim=-1)
    # 20,000 draws: a standard error under 0.0035 per class; 0.015 is over four of them
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)


def test_generation_leaves_the_model_mode_and_global_rng_alone(lm):
    model, tok = lm
    model.train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(model, tok, ["the"], 5)  # no seed: fresh entropy, but not from torch's global generator
    assert model.training
    torch.testing.assert_close(torch.rand(3), expected)
    with pytest.raises(InputError):
        generate(model, tok, ["Q"], 5)
    assert model.training


def test_tied_model_with_projection_decodes_the_same_way():
    torch.manual_seed(0)
    tok = Tokenizer.fit(TEXT)
    model = LanguageModel(len(tok), [GRU(10), LSTM(12)], embedding_size=6, tie_weights=True).eval()
    assert model.projection is not None
    ids = torch.tensor(tok.encode("traveller")).unsqueeze(1)
    full, _, _ = model(ids)
    dec = IncrementalDecoder(model)
    logits, state = dec.prime(ids[:2], torch.tensor([2]))
    for t in range(2, ids.shape[0]):
        logits, state = dec.step(ids[t], state)
        torch.testing.assert_close(logits, full[t], atol=1e-5, rtol=0)


@pytest.mark.parametrize("layers, residual", [
    ([LSTM(12), LSTM(12), GRU(8)], True),  # residual with and without a projection
    ([LSTM(12, zoneout=(0.3, 0.1)), GRU(12, zoneout=0.2, recurrent_dropout=0.3)], False),
])
def test_incremental_steps_equal_the_full_forward_pass(layers, residual):
    """Each step of the decoder gives the logits the whole model gives on the sequence so far."""
    torch.manual_seed(0)
    model = LanguageModel(20, layers, embedding_size=6, residual=residual).eval()
    dec = IncrementalDecoder(model)
    tokens = torch.randint(20, (9, 3))
    logits, state = dec.prime(tokens[:4], torch.full((3,), 4))
    for t in range(4, 9):
        full, _, _ = model(tokens[: t + 1])
        logits, state = dec.step(tokens[t], state)
        torch.testing.assert_close(logits, full[t], atol=1e-5, rtol=1e-5)
