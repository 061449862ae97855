"""The Python API (stackrnn.fit, stackrnn.load, stackrnn.summary): runs trained from Python, and the same results
as the command line for the same run and seed."""

import json
import random

import pytest
import torch

import stackrnn
from stackrnn.cli import main
from stackrnn.errors import InputError

TINY_LM = dict(hidden_size=32, num_layers=2, embedding_size=16, batch_size=8, num_steps=16, lr=0.03, progress=False,
               log_every=10, seed=3)
WORDS = "the a movie film plot was is very long short dull bright".split()
LEXICON = {"the": "le", "red": "rouge", "cat": "chat", "dog": "chien", "sees": "voit", "eats": "mange", "fish": "poisson"}


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, text_file):
    records = []
    run = stackrnn.fit(data=text_file, out=tmp_path_factory.mktemp("api") / "lm", epochs=1, test_fraction=0.1,
                       callbacks=[records.append], **TINY_LM)
    run.records = records
    return run


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    rng = random.Random(0)
    for split, n in (("train", 200), ("dev", 40), ("test", 40)):
        rows = []
        for i in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
            if i % 2 == 0:
                words.insert(rng.randrange(len(words) + 1), "great")
            rows.append(f"{' '.join(words)}\t{'pos' if i % 2 == 0 else 'neg'}\n")
        (folder / f"{split}.tsv").write_text("text\tlabel\n" + "".join(rows), encoding="utf-8")
    return stackrnn.fit(task="classify", data=folder, out=tmp_path_factory.mktemp("api") / "classify", epochs=3,
                        embedding_size=16, hidden_size=24, num_layers=1, batch_size=16, lr=0.01, progress=False, seed=1)


@pytest.fixture(scope="module")
def translator_run(tmp_path_factory):
    rng = random.Random(0)
    lines = []
    for _ in range(300):
        words = [rng.choice(list(LEXICON)) for _ in range(rng.randint(2, 5))]
        lines.append(f"{' '.join(words).capitalize()}.\t{' '.join(LEXICON[w] for w in words).capitalize()} .")
    path = tmp_path_factory.mktemp("parallel") / "toy.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {"task": "translate", "model": {"embedding_size": 16, "encoder_hidden_size": 16, "decoder_hidden_size": 32,
                                             "dropout": 0.0},
              "data": {"data": str(path), "batch_size": 32, "valid_fraction": 0.1, "test_fraction": 0.1},
              "train": {"epochs": 2, "lr": 0.01, "progress": False, "seed": 1}}
    return stackrnn.fit(config, out=tmp_path_factory.mktemp("api") / "translate")


def _cli_json(capsys, *argv):
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_fit_returns_the_loaded_run_and_calls_back_with_every_record(lm_run):
    assert isinstance(lm_run, stackrnn.LanguageModelRun) and not lm_run.model.training
    assert lm_run.result.step > 0 and lm_run.result.stopped == "finished"
    assert lm_run.config.model.stack.hidden_size == 32 and lm_run.config.data.test_fraction == 0.1
    assert lm_run.records == lm_run.metrics  # the callbacks saw exactly what metrics.jsonl holds
    assert {"train", "valid"} <= {r["split"] for r in lm_run.records}


def test_generate_equals_the_cli(lm_run, capsys):
    prefixes = ["The ", "class "]
    cli = _cli_json(capsys, "generate", str(lm_run.path), "--prefix", prefixes[0], "--prefix", prefixes[1], "--length", "40",
                    "--temperature", "0.7", "--top-k", "5", "--seed", "11", "--json")
    texts = lm_run.generate(prefixes, length=40, temperature=0.7, top_k=5, seed=11)
    assert texts == [c["text"] for c in cli]
    one = lm_run.generate("The ", length=40, seed=2)
    assert isinstance(one, str) and one.startswith("The ") and one == lm_run.generate("The ", length=40, seed=2)


def test_load_gives_the_same_model_and_evaluation_as_the_cli(lm_run, capsys):
    run = stackrnn.load(lm_run.path)
    assert type(run) is stackrnn.LanguageModelRun
    for a, b in zip(run.model.state_dict().values(), lm_run.model.state_dict().values()):
        assert torch.equal(a, b)
    assert run.evaluate("test") == _cli_json(capsys, "eval", str(run.path), "--split", "test", "--json")
    last = stackrnn.load(lm_run.path, weights="last")
    assert last.evaluate("valid")["tokens"] > 0


def test_predict_equals_the_cli(classifier_run, capsys):
    texts = ["I like food", "a great movie", "the plot was dull"]
    assert classifier_run.predict(texts) == _cli_json(capsys, "predict", str(classifier_run.path), *texts, "--json")
    one = classifier_run.predict("a great film")
    assert one["label"] in classifier_run.labels and abs(sum(one["probabilities"].values()) - 1) < 1e-4
    assert classifier_run.evaluate("test") == _cli_json(capsys, "eval", str(classifier_run.path), "--split", "test", "--json")


def test_translate_equals_the_cli(translator_run, capsys):
    texts = ["The cat sees the dog.", "The red fish eats."]
    cli = _cli_json(capsys, "translate", str(translator_run.path), *texts, "--beam", "3", "--json")
    assert translator_run.translate(texts, beam=3) == [c["translation"] for c in cli]
    assert translator_run.translate(texts[0], beam=1) == translator_run.translate([texts[0]], beam=1)[0]
    metrics = translator_run.evaluate("test", beam=2, examples=1)
    assert metrics == _cli_json(capsys, "eval", str(translator_run.path), "--split", "test", "--beam", "2",
                                "--examples", "1", "--json")


def test_summary_of_a_run_lists_the_embedding_and_head_as_rows(lm_run, capsys):
    table = stackrnn.summary(lm_run.path)
    assert [r.type for r in table.rows] == ["Embedding", "LSTM", "LSTM", "Linear"]
    assert table.rows[0].output_shape == (16, 8, 16) and table.rows[0].params == lm_run.model.embedding.weight.numel()
    assert sum(r.params for r in table.rows) == table.total_params
    assert str(table) == str(stackrnn.summary(lm_run)) == str(lm_run.summary())
    capsys.readouterr()
    assert main(["summary", str(lm_run.path)]) == 0
    assert capsys.readouterr().out.strip() == str(table)


def test_summary_cli_refuses_config_options_beside_a_run(lm_run, capsys):
    assert main(["summary", str(lm_run.path), "--hidden-size", "8"]) == 2
    assert "--hidden-size" in capsys.readouterr().err


def test_fit_resumes_a_run_with_more_epochs(tmp_path, text_file):
    first = stackrnn.fit(data=text_file, out=tmp_path / "r", epochs=1, max_steps=5, **TINY_LM)
    assert first.result.step == 5
    resumed = stackrnn.fit(out=tmp_path / "r", resume=True, max_steps=8)
    assert resumed.result.step == 8


def test_bad_arguments_are_input_errors(tmp_path, lm_run, classifier_run):
    with pytest.raises(InputError, match="did you mean hidden_size"):
        stackrnn.fit(out=tmp_path / "x", hiden_size=3)
    with pytest.raises(InputError, match="hidden_size: expected an integer"):
        stackrnn.fit(out=tmp_path / "x", hidden_size="big")
    with pytest.raises(InputError, match="not a classification run"):
        stackrnn.load(lm_run.path, task="classify")
    with pytest.raises(InputError, match="weights"):
        stackrnn.load(lm_run.path, weights="newest")
    with pytest.raises(InputError, match="device"):
        stackrnn.load(lm_run.path, device="gpu0")
    with pytest.raises(InputError, match="split"):
        lm_run.evaluate("train")
    with pytest.raises(InputError, match="list of strings"):
        classifier_run.predict([1, 2])
    with pytest.raises(InputError, match="empty list"):
        lm_run.generate([])
    assert not (tmp_path / "x").exists()
