"""Training end to end on real text, in seconds: it learns, it checkpoints, it resumes."""

import json
import math

import torch

from stackrnn.cli import main
from stackrnn.data.batching import unigram_perplexity
from stackrnn.data.pipeline import prepare
from stackrnn.generate import generate
from stackrnn.models.lm import LanguageModel
from stackrnn.run import RunDir, load_run

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
    cfg = RunDir(trained_run).load_config()
    assert cfg.model.hidden_size == 32 and cfg.data.num_steps == 16 and cfg.train.epochs == 1
    trainer = json.loads((trained_run / "trainer.json").read_text())
    assert trainer["epoch"] == 1 and trainer["step"] > 0


def test_generate_from_saved_run_equals_model_in_memory(trained_run, tmp_path, text_file):
    # train a model in memory with the same seed and data: its weights equal the saved ones
    _, tok, saved = load_run(trained_run)
    cfg = RunDir(trained_run).load_config()
    fresh = LanguageModel.from_config(cfg.model, len(tok))
    RunDir(trained_run).load_model(fresh, "model.safetensors")
    a = generate(saved, tok, ["The ", "def"], 60, temperature=0.9, seed=11)
    b = generate(fresh.eval(), tok, ["The ", "def"], 60, temperature=0.9, seed=11)
    assert a == b


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
    assert second["epoch"] == 2 and second["step"] == 2 * first["step"]
    records = RunDir(out).read_metrics()
    assert len(records) > lines_before
    steps = [r["step"] for r in records if r["split"] == "train"]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # continued, not restarted
    assert [r["epoch"] for r in records if r["split"] == "valid"] == [1, 2]


def test_time_budget_stops_with_checkpoint_and_resume_finishes_the_epoch(tmp_path, text_file):
    out = tmp_path / "run"
    # a budget of ~0.3 s: stops part-way through the first epoch
    assert main(["train", "--data", str(text_file), "--out", str(out), "--epochs", "1", "--max-minutes", "0.005", *TINY]) == 0
    stopped = json.loads((out / "trainer.json").read_text())
    assert stopped["epoch"] == 0 and 0 < stopped["batch"]
    assert (out / "model.safetensors").exists()
    hidden = RunDir(out).load_tensors("trainer.safetensors")
    assert "hidden.0.0" in hidden  # the carried state, so the epoch resumes mid-stream
    assert main(["train", "--resume", str(out), "--no-progress", "--max-minutes", "10"]) == 0
    done = json.loads((out / "trainer.json").read_text())
    assert done["epoch"] == 1 and done["batch"] == 0 and done["step"] > stopped["step"]


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
