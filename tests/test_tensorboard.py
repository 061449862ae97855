"""--tensorboard: metrics as TensorBoard events beside metrics.jsonl, purged on resume, and a clear line when
the package is missing."""

import builtins

import pytest

from stackrnn.cli import main

from .conftest import TINY


def _scalars(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_metrics_become_scalars_and_resume_purges_the_replayed_steps(tmp_path, text_file):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    flags = ["--tensorboard", "--log-every", "5", "--eval-every", "10", "--save-every", "5", "--epochs", "3"]
    assert main(["train", "--data", str(text_file), "--out", str(run), *TINY, *flags, "--max-steps", "15"]) == 0
    # as if the process had died after logging step 15 but before its checkpoint: back to step 10's checkpoint
    for f in (run / "previous").iterdir():
        f.replace(run / f.name)
    assert main(["train", "--resume", str(run), "--max-steps", "25", "--no-progress"]) == 0
    scalars = _scalars(run)
    assert [s for s, _ in scalars["train/loss"]] == [5, 10, 15, 20, 25]
    assert {"valid/perplexity", "valid/loss", "train/lr", "train/grad_norm"} <= set(scalars)
    # the same numbers as metrics.jsonl
    import json

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_loss = [(r["step"], r["loss"]) for r in records if r["split"] == "train" and "loss" in r]
    assert [s for s, _ in train_loss] == [5, 10, 15, 20, 25]
    assert all(abs(a[1] - b[1]) < 1e-5 * abs(b[1]) for a, b in zip(scalars["train/loss"], train_loss))


def test_without_the_package_it_is_one_line_and_nothing_is_created(tmp_path, text_file, capsys, monkeypatch):
    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert main(["train", "--data", str(text_file), "--out", str(tmp_path / "run"), "--tensorboard", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'stackrnn[tensorboard]'" in err[0]
    assert not (tmp_path / "run").exists()
