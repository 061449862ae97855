"""Training end to end on real text, in seconds: it learns, it checkpoints, it resumes."""

import json
import math

import pytest
import torch

from stackrnn.cli import main, make_parser, overrides_from
from stackrnn.train import build_config
from stackrnn.data.batching import unigram_perplexity
from stackrnn.data.pipeline import prepare, train_batches
from stackrnn.errors import InputError
from stackrnn.generate import generate
from stackrnn.run import RunDir
from stackrnn.train import RunConfig, load_run, train

from .conftest import TINY


def test_learns_well_below_the_unigram_baseline(trained_run):
    cfg, tok, model = load_run(trained_run)
    data = prepare(cfg.data, tokenizer=tok)
    baseline = unigram_perplexity(data.train, data.valid, len(tok))
    valid = [r for r in RunDir(trained_run).read_metrics() if r["split"] == "valid"]
    assert valid[-1]["perplexity"] < 0.75 * baseline, (valid[-1], baseline)


def test_run_directory_describes_itself(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.toml", "vocab.json", "model.safetensors", "last.safetensors", "optimizer.safetensors",
            "trainer.json", "trainer.safetensors", "metrics.jsonl"} <= names
    cfg = RunConfig.of_run(RunDir(trained_run))
    assert cfg.model.stack.hidden_size == 32 and cfg.data.num_steps == 16 and cfg.train.epochs == 1
    trainer = json.loads((trained_run / "trainer.json").read_text())
    assert trainer["epoch"] == 1 and trainer["step"] > 0


def _config(text_file, *flags) -> RunConfig:
    """The RunConfig the command line would build from TINY and `flags`."""
    args = make_parser().parse_args(["train", *TINY, "--data", str(text_file), *flags])
    return build_config(None, overrides_from(args))


def test_generate_from_saved_run_equals_model_in_memory(tmp_path, text_file):
    result = train(_config(text_file, "--max-steps", "40"), tmp_path / "run", progress=False)
    _, tok, saved = load_run(result.run, weights="last.safetensors")
    in_memory = result.model.eval()
    a = generate(in_memory, tok, ["The ", "def"], 60, temperature=0.9, seed=11)
    b = generate(saved, tok, ["The ", "def"], 60, temperature=0.9, seed=11)
    assert a == b
    assert a != generate(saved, tok, ["The ", "def"], 60, temperature=0.9, seed=12)


def test_resume_is_exact(tmp_path, text_file):
    """Stopped at step 25 (mid-epoch, dropout on) and resumed to 50 == run to 50 without a stop."""
    flags = ("--dropout", "0.2", "--epochs", "3")
    whole = train(_config(text_file, *flags, "--max-steps", "50"), tmp_path / "whole", progress=False)
    train(_config(text_file, *flags, "--max-steps", "25"), tmp_path / "split", progress=False)
    assert main(["train", "--resume", str(tmp_path / "split"), "--max-steps", "50", "--no-progress"]) == 0
    a, b = RunDir(tmp_path / "whole").load_tensors("last.safetensors"), RunDir(tmp_path / "split").load_tensors("last.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)
    assert json.loads((tmp_path / "split" / "trainer.json").read_text())["step"] == whole.step == 50
    # the longer budget given at resume is kept in the run's config
    assert RunConfig.of_run(RunDir(tmp_path / "split")).train.max_steps == 50


def test_cli_generate_matches_library(trained_run, capsys):
    _, tok, model = load_run(trained_run)
    expected = generate(model, tok, ["The "], 40, temperature=0.7, top_k=10, seed=2)[0]
    assert main(["generate", str(trained_run), "--prefix", "The ", "--length", "40", "--temperature", "0.7",
                 "--top-k", "10", "--seed", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == [{"prefix": "The ", "text": expected}]


def test_eval_json(trained_run, capsys):
    assert main(["eval", str(trained_run), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "test" and metrics["tokens"] > 0
    assert math.isclose(metrics["perplexity"], math.exp(metrics["loss"]), rel_tol=1e-9)
    assert math.isclose(metrics["bits_per_char"], metrics["loss"] / math.log(2), rel_tol=1e-9)


def test_resume_continues_steps_and_metrics(tmp_path, text_file):
    out = tmp_path / "run"
    assert main(["train", "--data", str(text_file), "--out", str(out), "--epochs", "1", *TINY]) == 0
    first = json.loads((out / "trainer.json").read_text())
    lines_before = len(RunDir(out).read_metrics())
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    second = json.loads((out / "trainer.json").read_text())
    cfg = RunConfig.of_run(RunDir(out))
    data = prepare(cfg.data, tokenizer=RunDir(out).load_tokenizer())
    assert second["epoch"] == 2
    assert second["step"] == first["step"] + len(train_batches(cfg.data, data.train, 1, cfg.train.seed))
    records = RunDir(out).read_metrics()
    assert len(records) > lines_before
    steps = [r["step"] for r in records if r["split"] == "train"]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # continued, not restarted
    assert [r["epoch"] for r in records if r["split"] == "valid"] == [1, 2]


def test_step_budget_stops_mid_epoch_with_checkpoint_and_resume_finishes_the_epoch(tmp_path, text_file):
    out = tmp_path / "run"
    assert main(["train", "--data", str(text_file), "--out", str(out), "--epochs", "1", "--max-steps", "7", *TINY]) == 0
    stopped = json.loads((out / "trainer.json").read_text())
    assert (stopped["epoch"], stopped["batch"], stopped["step"]) == (0, 7, 7)
    assert (out / "model.safetensors").exists()
    hidden = RunDir(out).load_tensors("trainer.safetensors")
    assert "hidden.0.0" in hidden  # the carried state, so the epoch resumes mid-stream
    assert main(["train", "--resume", str(out), "--no-progress", "--max-steps", "100000"]) == 0
    done = json.loads((out / "trainer.json").read_text())
    assert done["epoch"] == 1 and done["batch"] == 0 and done["step"] > 7


def test_time_budget_stops_cleanly(tmp_path, text_file):
    out = tmp_path / "run"
    assert main(["train", "--data", str(text_file), "--out", str(out), "--epochs", "1", "--max-minutes", "0.0001", *TINY]) == 0
    trainer = json.loads((out / "trainer.json").read_text())
    assert trainer["epoch"] == 0 and (out / "model.safetensors").exists()


def test_checkpoint_files_from_different_steps_are_refused(tmp_path, text_file):
    out = tmp_path / "run"
    assert main(["train", "--data", str(text_file), "--out", str(out), "--max-steps", "3", *TINY]) == 0
    older = (out / "optimizer.safetensors").read_bytes()
    assert main(["train", "--resume", str(out), "--max-steps", "6", "--no-progress"]) == 0
    (out / "optimizer.safetensors").write_bytes(older)  # as if a crash stopped the checkpoint half-way
    with pytest.warns(UserWarning, match="optimizer.safetensors is from step 3 but .*trainer.json from step 6"):
        result = train(RunConfig.of_run(RunDir(out)), out, resume=True, progress=False)
    assert result.step == 6  # resumed from the intact step-3 checkpoint and trained to 6 again
    (out / "optimizer.safetensors").write_bytes(older)
    import shutil

    shutil.rmtree(out / "previous")  # and with no previous checkpoint to fall back on, a clear error
    with pytest.raises(InputError, match="optimizer.safetensors is from step 3 but .*trainer.json from step 6"):
        train(RunConfig.of_run(RunDir(out)), out, resume=True, progress=False)


def test_sum_steps_loss_scales_the_gradient(tmp_path, text_file):
    """Zaremba et al.'s loss is summed over the window's steps: with SGD and no clipping, lr 0.05 on it makes
    the same updates as lr 0.05 * 16 = 0.8 on the mean."""
    weights = []
    for loss, lr in (("mean", "0.8"), ("sum_steps", "0.05")):
        out = tmp_path / loss
        # TINY first: the last --lr on the line wins
        assert main(["train", *TINY, "--data", str(text_file), "--out", str(out), "--optimizer", "sgd", "--lr", lr,
                     "--loss", loss, "--clip", "0", "--max-steps", "5"]) == 0
        weights.append(RunDir(out).load_tensors("last.safetensors"))
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], atol=1e-5, rtol=1e-4)


def test_variable_bptt_and_random_sampling_train(tmp_path, text_file):
    for extra in (["--variable-bptt"], ["--sampling", "random"]):
        out = tmp_path / extra[-1].strip("-")
        assert main(["train", *TINY, "--data", str(text_file), "--out", str(out), "--max-steps", "30", *extra]) == 0
        records = RunDir(out).read_metrics()
        assert records[-1]["split"] == "valid" and math.isfinite(records[-1]["loss"])
        assert records[-1]["lr"] == 0.03  # the per-window scaling of variable BPTT does not stick


def test_word_level_model_on_a_ptb_style_folder(tmp_path, capsys):
    """A word model on a folder with ptb.train/valid/test.txt: the folder's own split, <eos> per line,
    prefixes of whole words, and <unk> for rare words."""
    words = "the cat sat on the mat and the dog sat on the log".split()
    lines = [" ".join(words[i % 7: i % 7 + 5]) for i in range(400)]
    folder = tmp_path / "ptb"
    folder.mkdir()
    for name, part in (("train", lines[:300]), ("valid", lines[300:350]), ("test", lines[350:])):
        (folder / f"ptb.{name}.txt").write_text("\n".join(part) + "\n")
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(folder), "--level", "word", "--out", str(out), "--epochs", "3",
                 "--num-steps", "8"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["tokens"] == 50 * 6 and "bits_per_char" not in metrics  # 5 words + <eos> per line
    assert metrics["perplexity"] < 4  # the pattern is nearly deterministic: far below the 8-word vocabulary
    assert main(["generate", str(out), "--prefix", "the cat", "--length", "6", "--greedy", "--json"]) == 0
    text = json.loads(capsys.readouterr().out)[0]["text"]
    assert text.startswith("the cat ") and len(text.split()) >= 6


def test_awd_style_word_model_trains_end_to_end(tmp_path, text_file, capsys):
    """examples/ptb-awd.toml's regularisers at toy sizes: every option on, a few steps, a finite valid loss,
    and the reported loss free of the AR/TAR penalty (perplexity is the cross-entropy's)."""
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "examples" / "ptb-awd.toml"
    out = tmp_path / "awd"
    assert main(["train", "--config", str(config), "--data", str(text_file), "--level", "word", "--out", str(out),
                 "--embedding-size", "16", "--batch-size", "4", "--num-steps", "12", "--max-steps", "12",
                 "--eval-batch-size", "4", "--lr", "5", "--no-progress", "--log-every", "4"]) == 0
    cfg = RunConfig.of_run(RunDir(out))
    assert cfg.model.stack.variational and cfg.model.stack.weight_drop == 0.5 and cfg.data.variable_bptt
    records = RunDir(out).read_metrics()
    assert all(math.isfinite(r["loss"]) and math.isclose(r["perplexity"], math.exp(r["loss"])) for r in records)
    assert records[-1]["split"] == "valid"


def test_a_second_training_into_a_locked_run_directory_is_refused(tmp_path, text_file):
    out = tmp_path / "run"
    train(_config(text_file, "--max-steps", "2"), out, progress=False)
    with RunDir(out).lock():  # as if another process were training it
        with pytest.raises(InputError, match=r"is being trained by process \d+"):
            train(RunConfig.of_run(RunDir(out)), out, resume=True, progress=False)
    train(RunConfig.of_run(RunDir(out)), out, resume=True, progress=False)  # free again once released


def _nan_at(steps):
    """Make LanguageModel's loss NaN at the given calls of forward in training (1-based)."""
    from stackrnn.models.lm import LanguageModel

    real = LanguageModel.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        logits, loss, state = real(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] in steps:
                loss = loss * float("nan")
        return logits, loss, state

    return forward


def test_a_non_finite_step_is_skipped_and_counted(tmp_path, text_file, monkeypatch):
    from stackrnn.models.lm import LanguageModel

    monkeypatch.setattr(LanguageModel, "forward", _nan_at({3}))
    result = train(_config(text_file, "--max-steps", "6", "--log-every", "1"), tmp_path / "run", progress=False)
    trainer = json.loads((tmp_path / "run" / "trainer.json").read_text())
    assert trainer["skipped_steps"] == 1 and result.step == 6
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert any(r.get("skipped") for r in result.history)


def test_non_finite_steps_in_a_row_stop_with_a_clear_message(tmp_path, text_file, monkeypatch):
    from stackrnn.models.lm import LanguageModel

    monkeypatch.setattr(LanguageModel, "forward", _nan_at(set(range(4, 100))))
    with pytest.raises(InputError, match=r"training stopped: 3 steps in a row had a non-finite loss or gradient"):
        train(_config(text_file, "--max-bad-steps", "3", "--eval-every", "2"), tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "trainer.json").read_text())["step"] == 2  # the last good checkpoint


def test_early_stopping(tmp_path, text_file, monkeypatch):
    losses = iter([3.0, 3.1, 3.2, 3.3, 3.4, 3.5])
    monkeypatch.setattr("stackrnn.tasks.lm.evaluate_lm", lambda *a, **k: next(losses))
    result = train(_config(text_file, "--eval-every", "2", "--early-stop", "2", "--max-steps", "100"),
                   tmp_path / "run", progress=False)
    assert result.stopped == "early stop" and result.step == 6  # evaluations at 2 (best), 4, 6: two without progress


def test_sigkill_and_resume_ends_with_the_same_metrics(tmp_path, text_file):
    """A training process killed with SIGKILL mid-epoch, then resumed, ends with the same weights and the same
    metrics file, to the last digit, as a run that was never interrupted (CPU, deterministic settings)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    common = ["train", *TINY, "--data", str(text_file), "--dropout", "0.2", "--epochs", "2", "--save-every", "10",
              "--eval-every", "40", "--log-every", "5"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "stackrnn.cli", *common, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # wait until a checkpoint past the first one exists and training has gone on beyond it, then kill
    while time.monotonic() < deadline:
        try:
            step = json.loads((out / "trainer.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            step = 0
        if step >= 30:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((out / "trainer.json").read_text())["step"]
    assert 30 <= killed_at < 2 * 188, killed_at  # mid-run
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0

    a, b = RunDir(tmp_path / "whole"), RunDir(out)
    for name in ("last.safetensors", "model.safetensors"):
        ta, tb = a.load_tensors(name), b.load_tensors(name)
        for k in ta:
            torch.testing.assert_close(ta[k], tb[k], atol=0, rtol=0, msg=f"{name} {k}")
    strip = lambda records: [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")} for r in records]  # noqa: E731
    assert strip(a.read_metrics()) == strip(b.read_metrics())


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, text_file, capsys, damage):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(text_file), "--out", str(out), "--max-steps", "20", "--save-every", "10"]) == 0
    assert json.loads((out / "previous" / "trainer.json").read_text())["step"] == 10
    weights = out / "last.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        weights.unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--max-steps", "30", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "resumed from the previous checkpoint, at step 10" in err and "Traceback" not in err
    trainer = json.loads((out / "trainer.json").read_text())
    assert trainer["step"] == 30
    assert max(r["step"] for r in RunDir(out).read_metrics()) == 30
    # the recovered run checkpoints normally again: previous/ holds an intact step-20 checkpoint
    assert json.loads((out / "previous" / "trainer.json").read_text())["step"] == 20


def test_both_checkpoints_damaged(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(text_file), "--out", str(out), "--max-steps", "20", "--save-every", "10"]) == 0
    for folder in (out, out / "previous"):
        (folder / "optimizer.safetensors").write_bytes(b"\x00" * 64)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--max-steps", "30", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "both checkpoints are damaged" in err[0]


def test_bf16_precision_trains_under_autocast(tmp_path, text_file, monkeypatch):
    from stackrnn.models.lm import LanguageModel

    real, seen = LanguageModel.forward, []

    def forward(self, *args, **kwargs):
        if self.training:
            seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LanguageModel, "forward", forward)
    fp32 = train(_config(text_file, "--max-steps", "30", "--log-every", "10"), tmp_path / "fp32", progress=False)
    seen.clear()
    bf16 = train(_config(text_file, "--max-steps", "30", "--log-every", "10", "--precision", "bf16"), tmp_path / "bf16",
                 progress=False)
    assert seen and all(seen)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # autocast: the weights stay float32
    # bfloat16 keeps 8 bits of mantissa: the curves agree to a few percent, not to the last digit
    assert math.isfinite(bf16.train_loss) and abs(bf16.train_loss - fp32.train_loss) < 0.05 * fp32.train_loss


def _full_disk(monkeypatch, after: int = 0):
    """Make the run's safetensors writes fail as safetensors does on a full disk (a SafetensorError, not an
    OSError), from write number `after` + 1 on; the temporary file is half written first."""
    from safetensors import SafetensorError

    from stackrnn import run as run_module

    real, calls = run_module.save_file, {"n": 0}

    def save_file(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] <= after:
            return real(tensors, path, metadata=metadata)
        with open(path, "wb") as f:
            f.write(b"\x00" * 10)
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                              'left on device" })')

    monkeypatch.setattr(run_module, "save_file", save_file)


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, text_file, capsys,
                                                                                        monkeypatch):
    out = tmp_path / "run"
    _full_disk(monkeypatch, after=2)  # the step-2 checkpoint is written, the step-4 one fails
    assert main(["train", *TINY, "--data", str(text_file), "--out", str(out), "--max-steps", "4", "--save-every", "2"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in err, err
    assert json.loads((out / "trainer.json").read_text())["step"] == 2
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err, err  # the step-2 checkpoint was whole: no fallback was needed
    assert json.loads((out / "trainer.json").read_text())["step"] == 4


@pytest.mark.parametrize("existed", [False, True])
def test_a_full_disk_before_the_first_checkpoint_leaves_the_out_folder_free(tmp_path, text_file, capsys, monkeypatch,
                                                                            existed):
    out = tmp_path / "run"
    if existed:
        out.mkdir()  # an empty folder the user made: it stays
    command = ["train", *TINY, "--data", str(text_file), "--out", str(out), "--max-steps", "2"]
    _full_disk(monkeypatch)
    assert main(command) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert out.exists() == existed and not (existed and any(out.iterdir()))
    monkeypatch.undo()
    assert main(command) == 0  # the same command again, once there is room
    assert json.loads((out / "trainer.json").read_text())["step"] == 2


def test_the_time_budget_includes_the_closing_evaluation_checkpoint_and_sample(tmp_path, text_file, monkeypatch):
    """--max-minutes is the whole run's: it stops early enough for the last evaluation, checkpoint and sample to end
    within the budget (here an evaluation takes 1 s of a 6 s budget). The closing work is timed when it first runs
    during training (here every 20 steps: an estimate from the data's size stands in until then, and cannot
    foresee the sleep below)."""
    import time

    from stackrnn.tasks import lm

    real = lm.evaluate_lm

    def slow_evaluation(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(lm, "evaluate_lm", slow_evaluation)
    budget = 0.1  # minutes
    cfg = _config(text_file, "--epochs", "1000", "--max-minutes", str(budget), "--sample-prefix", "The",
                  "--sample-length", "20", "--eval-every", "20")
    t0 = time.monotonic()
    result = train(cfg, tmp_path / "run", progress=False)
    elapsed = time.monotonic() - t0
    assert result.stopped == "time budget" and result.sample
    assert elapsed <= budget * 60 * 1.05 + 0.3, elapsed  # at most about one training step over
    assert elapsed >= budget * 60 - 2.5, elapsed  # and the budget was used, not given up early


def test_an_instrument_watches_the_steps_it_asks_for_and_logs_its_figures(tmp_path, text_file):
    """train knows instruments only by their protocol (stackrnn.instruments): the context of the forward pass of
    the steps each asks for, and after the backward pass (gradients in place, not yet cleared) the figures it logs."""
    import contextlib

    from stackrnn.instruments import Instrument

    class EveryOther(Instrument):
        split = "other"

        def __init__(self):
            self.entered, self.model = [], None

        def before_step(self, step, model):
            if step % 2:
                return None
            self.model = model
            return self.forward_pass(step)

        @contextlib.contextmanager
        def forward_pass(self, step):
            yield
            self.entered.append(step)

        def after_backward(self, step, scale):
            with_grad = sum(p.grad is not None for p in self.model.parameters())
            return {"with_grad": with_grad, "scale": scale}

    instrument = EveryOther()
    result = train(_config(text_file, "--max-steps", "6"), tmp_path / "run", progress=False, instruments=[instrument])
    records = [r for r in result.history if r["split"] == "other"]
    assert [r["step"] for r in records] == instrument.entered == [2, 4, 6]
    n_params = sum(1 for _ in result.model.parameters())
    assert all(r["with_grad"] == n_params and r["scale"] == 1.0 and r["epoch"] == 1 and "time" in r for r in records)


def test_train_imports_nothing_above_it():
    """train sits below inspect and cli (DESIGN.md): the gradient probe reaches it as a registered instrument."""
    import ast
    from pathlib import Path

    import stackrnn.train

    tree = ast.parse(Path(stackrnn.train.__file__).read_text(encoding="utf-8"))
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    modules += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in modules if m.split(".")[0] in ("inspect", "cli", "api", "sweep", "plot")], modules


def test_each_task_name_loads_its_own_class_and_only_its_module():
    """A run imports only its own task's module; a message naming another task's runs imports none."""
    import subprocess
    import sys

    from stackrnn.tasks import TASK_NAMES, Task, a_run_of, task_class

    assert [a_run_of(name) for name in TASK_NAMES] == ["a language-model run", "a classification run", "a translation run",
                                                      "a forecasting run", "a speech recognition run"]

    for name in TASK_NAMES:
        assert issubclass(task_class(name), Task) and task_class(name).__module__ == f"stackrnn.tasks.{name}"
        assert set(task_class(name).sections) == {"model", "data"}
    with pytest.raises(InputError, match=r"^task: expected one of lm, classify, translate, forecast, speech, got 'asr'$"):
        task_class("asr")
    loaded = subprocess.run([sys.executable, "-c", "import json, sys; from stackrnn.tasks import task_class; "
                             "from stackrnn.tasks import a_run_of; a_run_of('speech'); a_run_of('translate'); "
                             "task_class('lm'); print(json.dumps(sorted(m for m in sys.modules if "
                             "m.startswith('stackrnn.tasks.'))))"], capture_output=True, text=True, timeout=120,
                            check=True).stdout
    assert json.loads(loaded) == ["stackrnn.tasks.base", "stackrnn.tasks.lm"], loaded


@pytest.mark.parametrize("task", ["lm", "classify", "translate", "forecast", "speech"])
def test_each_task_takes_every_figure_it_monitors_from_the_command_line(task, capsys):
    """--monitor reaches the task, which knows its own figures (translators could not pick bleu when the flag
    had a fixed list of three); one it does not measure is refused with the task's list."""
    from stackrnn.tasks import a_run_of, task_class

    with pytest.raises(SystemExit):
        main(["train", "--task", task, "--help"])
    said = " ".join(capsys.readouterr().out.split())  # (unwrapped)
    said = said[said.rindex("--monitor MONITOR"):]  # (the option's entry, not the usage line's)
    said = said[said.index("the task measures: ") + 19:said.index(" (default: auto)")]  # "loss; classify: accuracy; ..."
    offered = dict(part.split(": ") for part in said.split("; ")[1:])
    assert said.split("; ")[0] == "loss" and set(offered) <= {"classify", "translate", "forecast", "speech"}, said
    assert {"loss", *offered.get(task, "").split(", ")} - {""} == set(task_class(task).monitors), said
    parser = make_parser()
    for figure in task_class(task).monitors:
        args = parser.parse_args(["train", "--task", task, "--monitor", figure])
        cfg = build_config(None, overrides_from(args), task=task)
        assert cfg.make_task().monitored(cfg.train.monitor) == figure
    auto = build_config(None, {}, task=task).make_task()
    assert auto.monitored("auto") == task_class(task).monitors[0]
    with pytest.raises(InputError, match=rf"^train.monitor: {a_run_of(task)} measures "
                                         rf"{', '.join(task_class(task).monitors)} on its validation data, not owl: "):
        auto.monitored("owl")


def test_a_wrong_monitor_is_refused_before_the_data_is_read(tmp_path, capsys):
    from .conftest import fails_in_one_line

    fails_in_one_line(capsys, ["train", "--data", str(tmp_path / "missing.txt"), "--monitor", "bleu", "--out",
                               str(tmp_path / "run")], "train.monitor: a language-model run measures loss")
    assert not (tmp_path / "run").exists()
