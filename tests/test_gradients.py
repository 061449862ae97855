"""Gradient diagnostics: the probe's norms against gradients taken directly, its hooks, and --grad-every."""

import json
import math

import pytest
import torch

from stackrnn import GRU, LSTM, RNN, SequenceClassifier, StackedRNN
from stackrnn.cli import main
from stackrnn.inspect.gradients import GradientProbe, finite_or_none, probe_model
from stackrnn.models.lm import LanguageModel

from .conftest import TINY


def _mixed_stack(fused: bool) -> StackedRNN:
    torch.manual_seed(0)
    return StackedRNN(5, layers=[LSTM(6), GRU(4, bidirectional=True), RNN(7), LSTM(7)], residual=3, fused=fused)


def _loss(output: torch.Tensor) -> torch.Tensor:
    weights = torch.linspace(-1, 1, output.shape[-1])
    return (output @ weights).pow(2).mean()


def test_probe_matches_gradients_taken_directly():
    fast, reference = _mixed_stack(fused=True), _mixed_stack(fused=False)
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(9, 3, 5, generator=torch.Generator().manual_seed(1))
    with GradientProbe(fast) as probe:
        out, _ = fast(x)
    _loss(out).backward()
    got = probe.norms()

    out, _, layer_outputs = reference(x, return_all_layers=True)
    for o in layer_outputs:
        o.retain_grad()
    _loss(out).backward()
    steps = [o.grad.pow(2).sum(dim=(1, 2)).sqrt() for o in layer_outputs]  # (T,) per layer

    assert len(got["step_grad_norm"]) == 4 and all(len(s) == 9 for s in got["step_grad_norm"])
    for layer, expected in enumerate(steps):
        torch.testing.assert_close(torch.tensor(got["step_grad_norm"][layer]), expected, rtol=1e-4, atol=1e-6)
        assert got["layer_grad_norm"][layer] == pytest.approx(float(layer_outputs[layer].grad.norm()), rel=1e-4)
    assert all(n > 0 for n in got["layer_grad_norm"])


def test_probe_hooks_only_while_active():
    stack = _mixed_stack(fused=True)
    x = torch.randn(4, 2, 5)
    with pytest.raises(ZeroDivisionError):
        with GradientProbe(stack) as probe:
            assert stack.layer_output_hook is not None
            out, _ = stack(x)
            1 / 0
    assert stack.layer_output_hook is None  # removed even when the block fails
    _loss(out).backward()  # the hooked forward's gradients still arrive after the block
    before = probe.norms()
    assert all(len(s) == 4 for s in before["step_grad_norm"])
    out, _ = stack(x)  # a forward outside the block is not watched
    _loss(out).backward()
    assert probe.norms() == before
    with GradientProbe(stack):
        with pytest.raises(RuntimeError, match="one probe at a time"):
            GradientProbe(stack).__enter__()
    assert stack.layer_output_hook is None


def test_probe_without_gradient_and_on_models():
    stack = _mixed_stack(fused=True)
    with torch.no_grad(), GradientProbe(stack) as probe:
        stack(torch.randn(3, 1, 5))
    assert probe.norms() == {"layer_grad_norm": [0.0] * 4, "step_grad_norm": [[]] * 4}
    lm = LanguageModel(11, [LSTM(8), GRU(8)], embedding_size=4)
    assert probe_model(lm).stack is lm.rnn
    assert probe_model(torch.nn.Linear(2, 2)) is None  # (an encoder-decoder has no one .rnn either)
    torch.manual_seed(0)
    classifier = SequenceClassifier(11, 3, [LSTM(5, bidirectional=True), GRU(4)], embedding_size=6, residual=True)
    with probe_model(classifier) as probe:
        _, loss = classifier(torch.randint(11, (7, 2)), torch.tensor([7, 4]), torch.tensor([0, 2]))
    loss.backward()
    norms = probe.norms()
    assert [len(s) for s in norms["step_grad_norm"]] == [7, 7] and all(n > 0 for n in norms["layer_grad_norm"])
    assert finite_or_none([1.0, math.inf, [math.nan, 2.0]]) == [1.0, None, [None, 2.0]]


def _depth_norms(residual: bool) -> list[float]:
    torch.manual_seed(0)
    stack = StackedRNN(8, 16, num_layers=8, cell="rnn_tanh", residual=residual)
    g = torch.Generator().manual_seed(100)
    x, w = torch.randn(20, 4, 8, generator=g), torch.randn(16, generator=g)
    with GradientProbe(stack) as probe:
        out, _ = stack(x)
    (out @ w).pow(2).mean().backward()
    return probe.norms()["layer_grad_norm"]


def test_vanishing_gradient_through_depth_and_residual_cure():
    """An 8-layer tanh RNN at torch's default initialisation passes the bottom layer about 1/20 of the top's
    gradient (seeds 0-4: 1/16 to 1/50); with residual connections the identity path carries it down undiminished."""
    plain, residual = _depth_norms(False), _depth_norms(True)
    assert plain[0] < 0.2 * plain[-1]
    assert all(a < b for a, b in zip(plain, plain[1:]))  # shrinking all the way down
    assert residual[0] > 0.5 * residual[-1]


def test_grad_every_logs_each_layer_and_step(tmp_path, text_file):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(text_file), "--out", str(out), "--max-steps", "12", "--grad-every", "5"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    grads = [r for r in records if r["split"] == "grad"]
    assert [r["step"] for r in grads] == [5, 10]
    for r in grads:
        assert set(r) == {"step", "epoch", "split", "layer_grad_norm", "step_grad_norm", "time"}
        assert len(r["layer_grad_norm"]) == 2 and all(n > 0 for n in r["layer_grad_norm"])
        assert [len(s) for s in r["step_grad_norm"]] == [16, 16]  # --num-steps 16
        assert math.sqrt(sum(v * v for v in r["step_grad_norm"][0])) == pytest.approx(r["layer_grad_norm"][0], rel=1e-6)


def test_grad_every_refuses_negative(tmp_path, text_file, capsys):
    assert main(["train", *TINY, "--data", str(text_file), "--out", str(tmp_path / "r"), "--grad-every", "-1"]) == 2
    assert "--grad-every: expected an integer >= 0" in capsys.readouterr().err
