"""Text classification end to end: train, eval, predict through the library and the command line, resume,
and bad input as one line with exit status 2 and nothing written."""

import json
import random
from pathlib import Path

import pytest
import torch

from stackrnn.cli import main
from stackrnn.run import RunDir
from stackrnn.train import RunConfig, open_run, train

from .conftest import SHARED, fails_in_one_line as _fails

WORDS = "the a movie film plot actors story was is very quite rather long short dull bright".split()
TINY = ["--task", "classify", "--embedding-size", "16", "--hidden-size", "24", "--num-layers", "2", "--batch-size", "16",
        "--lr", "0.01", "--no-progress", "--log-every", "5", "--seed", "1"]


def _rule_data(n: int, seed: int) -> list[tuple[str, str]]:
    """A synthetic rule: the label says whether the word 'great' occurs anywhere in the text."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        positive = i % 2 == 0
        if positive:
            words.insert(rng.randrange(len(words) + 1), "great")
        rows.append((" ".join(words), "pos" if positive else "neg"))
    return rows


def _write_tsv(path: Path, rows) -> Path:
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rule")
    return (_write_tsv(folder / "train.tsv", _rule_data(400, 0)), _write_tsv(folder / "dev.tsv", _rule_data(80, 1)),
            _write_tsv(folder / "test.tsv", _rule_data(80, 2)))


@pytest.fixture(scope="module")
def rule_run(tmp_path_factory, rule_files):
    out = tmp_path_factory.mktemp("runs") / "rule"
    assert main(["train", "--data", str(rule_files[0].parent), "--out", str(out), "--epochs", "6",
                 "--bidirectional", *TINY]) == 0
    return out


def test_a_tiny_bidirectional_run_learns_the_rule_perfectly(rule_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(rule_run), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == 1.0 and metrics["examples"] == 80
    assert metrics["confusion_matrix"] == [[40, 0], [0, 40]] and metrics["labels"] == ["neg", "pos"]
    assert metrics["per_class"]["pos"]["f1"] == 1.0 and metrics["macro_f1"] == 1.0


def test_eval_table_and_run_directory(rule_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(rule_run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy 1.0000" in out and "confusion matrix" in out and "precision" in out
    assert json.loads((rule_run / "labels.json").read_text())["labels"] == ["neg", "pos"]
    assert RunConfig.of_run(RunDir(rule_run)).task == "classify"
    records = [json.loads(line) for line in (rule_run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["split"] == "valid" and "accuracy" in r for r in records)
    assert any(r["split"] == "train" and "examples_per_s" in r for r in records)


def test_predict_texts_and_file(rule_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["predict", str(rule_run), "a great movie", "the plot was dull", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in out] == ["pos", "neg"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in out)
    f = tmp_path / "texts.txt"
    f.write_text("a great movie\n\nthe plot was dull\n", encoding="utf-8")
    assert main(["predict", str(rule_run), "--file", str(f)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("pos\t") and lines[1].startswith("neg\t")


def test_predict_from_the_saved_run_equals_the_model_in_memory(tmp_path, rule_files):
    cfg = _cli_config(["--data", str(rule_files[0]), "--valid-data", str(rule_files[1]), "--max-steps", "12"])
    result = train(cfg, tmp_path / "run", progress=False)
    _, task, saved = open_run(result.run, weights="last.safetensors")
    texts = [t for t, _ in _rule_data(30, 5)]
    assert task.predict(result.model.eval(), texts) == task.predict(saved, texts)


def test_resume_mid_epoch_is_exact(tmp_path, rule_files):
    flags = ["--data", str(rule_files[0]), "--valid-data", str(rule_files[1]), "--dropout", "0.3", "--epochs", "2"]
    train(_cli_config(flags + ["--max-steps", "30"]), tmp_path / "whole", progress=False)
    train(_cli_config(flags + ["--max-steps", "11"]), tmp_path / "split", progress=False)
    assert main(["train", "--resume", str(tmp_path / "split"), "--max-steps", "30", "--no-progress"]) == 0
    a, b = RunDir(tmp_path / "whole").load_tensors("last.safetensors"), RunDir(tmp_path / "split").load_tensors("last.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)


def test_a_validation_split_is_held_out_when_there_is_no_file(tmp_path, rule_files, capsys):
    assert main(["train", "--data", str(rule_files[0]), "--out", str(tmp_path / "run"), "--max-steps", "2", *TINY]) == 0
    assert "360 training and 40 validation texts" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 40


def test_keras_replica_config_builds_the_keras_model(capsys):
    assert main(["summary", "--config", "examples/keras-sentiment.toml", "--vocab-size", "1000"]) == 0
    out = capsys.readouterr().out
    assert out.count("LSTM") == 3 and "16,000" in out  # Embedding(1000, 16), three LSTM(32)


def _cli_config(flags):
    from stackrnn.cli import make_parser, overrides_from
    from stackrnn.train import build_config

    args = make_parser("classify").parse_args(["train", *TINY, *flags])
    return build_config(None, overrides_from(args), "classify")


# -- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, match", [
    ("sentence\tlabel\nfine\tpos\n", "text"),  # no text column: the message lists the header's columns
    ("text\tlabel\nfine\tpos\n\tneg\n", "line 3"),  # an empty text
    ("text\tlabel\nfine\tpos\nalso fine\tpos\nstill\tpos\n", "two classes"),  # one class only
])
def test_bad_training_data(tmp_path, capsys, content, match):
    f = tmp_path / "bad.tsv"
    f.write_text(content, encoding="utf-8")
    _fails(capsys, ["train", "--data", str(f), "--out", str(tmp_path / "run"), *TINY], match)
    assert not (tmp_path / "run").exists()


def test_a_file_that_is_not_utf8_names_the_line_and_offers_encoding(tmp_path, capsys):
    f = tmp_path / "latin.tsv"
    f.write_bytes("text\tlabel\nfine\tpos\ncaf\u00e9\tneg\n".encode("latin-1"))
    line = _fails(capsys, ["train", "--data", str(f), "--out", str(tmp_path / "run"), *TINY], "line 3")
    assert "--encoding" in line
    assert main(["train", "--data", str(f), "--encoding", "latin-1", "--out", str(tmp_path / "run"), "--max-steps", "1",
                 "--valid-fraction", "0.4", *TINY]) == 2  # two examples are too few to hold out from: still one line


def test_labels_unseen_in_training_at_eval_time(rule_run, tmp_path, capsys):
    f = _write_tsv(tmp_path / "other.tsv", [("a great movie", "pos"), ("so so", "mixed")])
    line = _fails(capsys, ["eval", str(rule_run), "--data", str(f)], "'mixed'")
    assert "not among the training labels" in line


def test_predict_and_generate_refuse_the_other_task(rule_run, trained_run, capsys):
    _fails(capsys, ["predict", str(trained_run), "hello"], "is a language-model run, not a classification run")
    _fails(capsys, ["generate", str(rule_run), "--prefix", "a"], "is a classification run, not a language-model run")
    _fails(capsys, ["predict", str(rule_run), ""], "empty")
    _fails(capsys, ["predict", str(rule_run)], "--file")


def test_a_classify_config_gets_the_classifier_options_without_task(tmp_path, rule_files, capsys):
    config = tmp_path / "c.toml"
    config.write_text('task = "classify"\n[model]\nhidden_size = 8\nembedding_size = 8\nnum_layers = 1\n')
    assert main(["train", "--config", str(config), "--data", str(rule_files[0]), "--pooling", "mean", "--max-steps", "2",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert RunConfig.of_run(RunDir(tmp_path / "run")).model.pooling == "mean"


def test_task_flag_and_config_must_agree(tmp_path, capsys):
    _fails(capsys, ["train", "--task", "classify", "--config", "examples/timemachine.toml", "--out", str(tmp_path / "r")],
           "task = 'lm'")


@pytest.mark.skipif(not (SHARED / "sst2_sentences").is_dir(), reason="../shared/data/sst2_sentences is absent")
def test_sst2_folder_is_read_with_its_own_split(tmp_path, capsys):
    assert main(["train", "--config", "examples/keras-sentiment.toml", "--data", str(SHARED / "sst2_sentences"),
                 "--out", str(tmp_path / "run"), "--max-steps", "3", "--no-progress", "--pooling", "max"]) == 0
    assert "6,920 training and 872 validation texts, 2 classes" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "run"), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 1821


def test_plot_draws_validation_accuracy(rule_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["plot", str(rule_run), "--out", str(tmp_path / "plots")]) == 0
    written = {Path(p).name for p in capsys.readouterr().out.split()}
    assert {"loss.png", "accuracy.png"} <= written and "perplexity.png" not in written


def test_best_weights_are_picked_by_validation_accuracy_unless_told_otherwise(tmp_path, rule_files, monkeypatch):
    from stackrnn.tasks.classify import ClassifyTask

    def scripted():
        # loss bottoms out at the second evaluation, accuracy peaks at the third
        return iter([{"loss": 0.6, "accuracy": 0.70}, {"loss": 0.5, "accuracy": 0.75}, {"loss": 0.7, "accuracy": 0.80},
                     {"loss": 0.9, "accuracy": 0.78}])

    flags = ["--data", str(rule_files[0]), "--valid-data", str(rule_files[1]), "--eval-every", "3", "--max-steps", "12"]
    evaluations = scripted()
    monkeypatch.setattr(ClassifyTask, "evaluate", lambda self, model, device: next(evaluations))
    assert train(_cli_config(flags), tmp_path / "acc", progress=False).best_valid["accuracy"] == 0.80
    evaluations = scripted()
    assert train(_cli_config(flags + ["--monitor", "loss"]), tmp_path / "loss", progress=False).best_valid["loss"] == 0.5


def test_a_language_model_cannot_monitor_accuracy(tmp_path, text_file, capsys):
    _fails(capsys, ["train", "--data", str(text_file), "--monitor", "accuracy", "--out", str(tmp_path / "r")],
           "train.monitor")
    assert not (tmp_path / "r").exists()


def test_eval_reads_another_file_with_its_own_encoding(rule_run, tmp_path, capsys):
    f = tmp_path / "latin.tsv"
    f.write_bytes("text\tlabel\ngreat caf\u00e9\tpos\nthe film\tneg\n".encode("latin-1"))
    line = _fails(capsys, ["eval", str(rule_run), "--data", str(f)], "line 2")
    assert "--encoding" in line
    assert main(["eval", str(rule_run), "--data", str(f), "--encoding", "latin-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 2
    _fails(capsys, ["eval", str(rule_run), "--data", str(f), "--encoding", "rot13"], "unknown text encoding")


def test_a_seed_near_the_top_of_its_range_trains(tmp_path, rule_files):
    cfg = _cli_config(["--data", str(rule_files[0]), "--max-steps", "2", "--seed", str(2**63 - 1)])
    assert train(cfg, tmp_path / "run", progress=False).step == 2


def test_a_val_file_in_the_data_folder_is_the_validation_split(tmp_path, capsys):
    for name, n, seed in (("train.csv", 60, 0), ("val.csv", 20, 1)):
        (tmp_path / name).write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in _rule_data(n, seed)))
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--max-steps", "1", *TINY]) == 0
    assert "60 training and 20 validation texts" in capsys.readouterr().err


def test_holding_out_keeps_every_class_in_training(tmp_path, capsys):
    f = _write_tsv(tmp_path / "few.tsv", [("great", "pos")] * 6 + [("dull", "neg")])
    assert main(["train", "--data", str(f), "--out", str(tmp_path / "run"), "--max-steps", "1", *TINY]) == 0
    assert "6 training and 1 validation texts, 2 classes" in capsys.readouterr().err


@pytest.mark.parametrize("flags, match", [
    (["--dataset", "sst2", "--test-data", "x.tsv"], "named dataset"),
    (["--sample-prefix", "the"], "language models"),
])
def test_options_that_do_not_fit_a_classification_run(tmp_path, rule_files, capsys, flags, match):
    source = [] if "--dataset" in flags else ["--data", str(rule_files[0])]
    _fails(capsys, ["train", *source, *flags, "--out", str(tmp_path / "run"), *TINY], match)
    assert not (tmp_path / "run").exists()
