"""--precision fp16: float16 autocast with a dynamic loss scale (torch.amp.GradScaler), on CPU here and on CUDA
where there is one. An overflow is the scaler's skip, not a bad step; the scaler's state resumes exactly."""

import functools
import json
import math
import warnings

import pytest
import torch

from stackrnn import StackedRNN
from stackrnn.cli import main
from stackrnn.layers import GRU, LSTM
from stackrnn.run import RunDir
from stackrnn.train import RunConfig, train

from .test_train import _config, _nan_at


def _scaler_starting_at(monkeypatch, init_scale: float, growth_interval: int = 2000) -> None:
    """Make train()'s GradScaler start from `init_scale`: a scale too large for float16 makes the first steps'
    gradients overflow, as a real run's scale does after it has grown too far."""
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=init_scale,
                                                                   growth_interval=growth_interval))


def _trainer(run) -> dict:
    return json.loads((run / "trainer.json").read_text())


def test_fp16_trains_under_autocast_with_a_loss_scale(tmp_path, text_file, monkeypatch):
    from stackrnn.models.lm import LanguageModel

    real, seen = LanguageModel.forward, []

    def forward(self, *args, **kwargs):
        if self.training:
            seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.float16)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LanguageModel, "forward", forward)
    flags = ("--max-steps", "40", "--log-every", "10", "--grad-every", "20")
    fp32 = train(_config(text_file, *flags), tmp_path / "fp32", progress=False)
    seen.clear()
    fp16 = train(_config(text_file, *flags, "--precision", "fp16"), tmp_path / "fp16", progress=False)
    assert seen and all(seen)
    assert all(p.dtype == torch.float32 for p in fp16.model.parameters())  # autocast: the weights stay float32
    losses = [r["loss"] for r in fp16.history if r["split"] == "train"]
    assert losses[-1] < 0.9 * losses[0]
    # float16 keeps 11 bits of mantissa: closer to float32 than bf16, still not to the last digit
    assert abs(fp16.train_loss - fp32.train_loss) < 0.02 * fp32.train_loss
    # the scaler ran every step: no overflow at this size, so its growth tracker counts all 40 steps
    scaler = _trainer(tmp_path / "fp16")["scaler"]
    assert scaler["scale"] == 2.0**16 and scaler["_growth_tracker"] == 40
    assert _trainer(tmp_path / "fp32")["scaler"] == {}  # fp32 and bf16 have none
    assert all(r["loss_scale"] == 2.0**16 and r["scaler_skipped"] == 0 for r in fp16.history if r["split"] == "train")
    # the gradient probe saw the scaled gradients; divided by the scale, they are float32's to float16's precision
    half, single = ([r["layer_grad_norm"] for r in run.history if r["split"] == "grad"] for run in (fp16, fp32))
    assert len(half) == len(single) == 2
    for a, b in zip(half, single):
        assert a == pytest.approx(b, rel=0.05)


def test_an_overflow_is_the_scalers_skip_not_a_bad_step(tmp_path, text_file, monkeypatch):
    """A scale of 2**22 overflows float16 in this model's backward pass until the scaler has halved it four times
    (to 2**18): four skipped steps in a row, more than --max-bad-steps 2, and training goes on. A NaN loss at
    step 10 is still a bad step, counted apart, and leaves the scale alone."""
    from stackrnn.models.lm import LanguageModel

    _scaler_starting_at(monkeypatch, 2.0**22)
    monkeypatch.setattr(LanguageModel, "forward", _nan_at({10}))
    result = train(_config(text_file, "--precision", "fp16", "--max-steps", "30", "--log-every", "5",
                           "--max-bad-steps", "2"), tmp_path / "run", progress=False)
    trainer = _trainer(tmp_path / "run")
    assert result.step == 30 and trainer["skipped_steps"] == 1 and trainer["scaler_skipped"] == 4
    assert trainer["scaler"]["scale"] == 2.0**18
    # the weights changed only on the 25 steps that were neither: Adam counts the updates it made
    adam = RunDir(tmp_path / "run").load_tensors("optimizer.safetensors")
    assert {int(t) for k, t in adam.items() if k.endswith(".step")} == {30 - 4 - 1}
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert [r["step"] for r in result.history if r.get("skipped")] == [10]  # only the NaN loss is logged as skipped
    train_records = [r for r in result.history if r["split"] == "train" and "loss" in r]
    first = train_records[0]
    assert (first["step"], first["scaler_skipped"], first["loss_scale"]) == (5, 4, 2.0**18)
    assert train_records[-1]["scaler_skipped"] == 4 and train_records[-1]["loss"] < first["loss"]


def test_fp16_resume_is_exact(tmp_path, text_file, monkeypatch):
    """Stopped at step 25 and resumed to 50 == run to 50 without a stop, with a scale that overflowed, shrank
    and grew again (growth every 8 clean steps), so the resumed scaler must pick up its scale and growth tracker."""
    _scaler_starting_at(monkeypatch, 2.0**22, growth_interval=8)
    flags = ("--precision", "fp16", "--dropout", "0.2", "--epochs", "3", "--log-every", "5")
    whole = train(_config(text_file, *flags, "--max-steps", "50"), tmp_path / "whole", progress=False)
    train(_config(text_file, *flags, "--max-steps", "25"), tmp_path / "split", progress=False)
    stopped = _trainer(tmp_path / "split")["scaler"]
    assert stopped["scale"] != 2.0**22 and stopped["_growth_tracker"] != 0  # a state a fresh scaler would not have
    assert main(["train", "--resume", str(tmp_path / "split"), "--max-steps", "50", "--no-progress"]) == 0
    a, b = RunDir(tmp_path / "whole"), RunDir(tmp_path / "split")
    ta, tb = a.load_tensors("last.safetensors"), b.load_tensors("last.safetensors")
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], atol=0, rtol=0, msg=k)
    assert _trainer(tmp_path / "split")["scaler"] == _trainer(tmp_path / "whole")["scaler"]
    assert _trainer(tmp_path / "split")["scaler_skipped"] == _trainer(tmp_path / "whole")["scaler_skipped"] > 4
    # the training records (loss, grad norm, loss scale, skips) too; the stop at 25 adds a validation record
    strip = lambda run: [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")}  # noqa: E731
                         for r in run.read_metrics() if r["split"] == "train"]
    assert strip(a) == strip(b) and whole.step == 50


def test_precision_on_the_command_line(trained_run, text_file, capsys):
    args = ["train", "--data", "x.txt", "--out", "unused"]
    assert _config(text_file, "--precision", "fp16").train.precision == "fp16"
    assert main([*args, "--precision", "fp8"]) == 2
    assert "--precision: expected one of fp32, bf16, fp16, got 'fp8'" in capsys.readouterr().err
    # a run keeps its precision on resume, as it keeps the rest of its config
    assert RunConfig.of_run(RunDir(trained_run)).train.precision == "fp32"
    assert main(["train", "--resume", str(trained_run), "--precision", "fp16"]) == 2
    assert "would change it: train.precision" in capsys.readouterr().err


def test_engine_layers_under_fp16_autocast_on_cpu():
    """Zoneout, recurrent dropout and layer norm run the engine, a plain LSTM the fused kernel
    (which falls back to float32 on this CPU): under float16 autocast the stack agrees with float32 to float16's
    precision in eval mode, and trains to finite outputs and gradients, padded batches included."""
    torch.manual_seed(0)
    stack = StackedRNN(8, layers=[LSTM(16, zoneout=0.2, recurrent_dropout=0.1), LSTM(16, layer_norm=True),
                                  GRU(16, zoneout=0.1, layer_norm=True), LSTM(16)], dropout=0.1)
    x, lengths = torch.randn(6, 3, 8), torch.tensor([6, 4, 2])  # (T, B, D)

    def run(fp16: bool, training: bool):
        stack.train(training).zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fused kernel's float32 fallback
            with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
                y, _ = stack(x, lengths=lengths)
        y.float().pow(2).mean().backward()
        return y.float(), [p.grad.clone() for p in stack.parameters()]

    y32, g32 = run(False, training=False)
    y16, g16 = run(True, training=False)
    torch.testing.assert_close(y16, y32, atol=5e-3, rtol=1e-2)
    # float16 rounds to about 5e-4 per operation; through 4 layers and 6 steps back, about 1% per parameter here
    errors = [((a - b).norm() / b.norm()).item() for a, b in zip(g16, g32)]
    assert max(errors) < 3e-2, errors
    y, grads = run(True, training=True)
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda(tmp_path, text_file):
    result = train(_config(text_file, "--device", "cuda", "--precision", "fp16", "--max-steps", "20",
                           "--log-every", "10"), tmp_path / "run", progress=False)
    assert math.isfinite(result.train_loss) and next(result.model.parameters()).is_cuda
    trainer = _trainer(tmp_path / "run")
    assert trainer["scaler"]["_growth_tracker"] + trainer["scaler_skipped"] > 0 and trainer["skipped_steps"] == 0


def test_gradients_that_overflow_at_every_scale_stop_training_with_a_clear_message(tmp_path, text_file, monkeypatch):
    """A gradient that is infinite whatever the loss scale (here: made so by a hook on the logits) would make the
    scaler skip step after step while the scale falls to nothing; after 40 in a row training stops instead (and
    not after --max-bad-steps 2: these are overflows, not bad steps)."""
    from stackrnn.errors import InputError
    from stackrnn.models.lm import LanguageModel

    real = LanguageModel.forward

    def forward(self, *args, **kwargs):
        logits, loss, state = real(self, *args, **kwargs)
        if self.training and logits.requires_grad:
            logits.register_hook(lambda g: g * float("inf"))
        return logits, loss, state

    monkeypatch.setattr(LanguageModel, "forward", forward)
    with pytest.raises(InputError, match=r"40 fp16 steps in a row had a non-finite gradient .* --precision bf16"):
        train(_config(text_file, "--precision", "fp16", "--max-steps", "100", "--max-bad-steps", "2"),
              tmp_path / "run", progress=False)
    records = RunDir(tmp_path / "run").read_metrics()
    assert not [r for r in records if r.get("skipped")]
