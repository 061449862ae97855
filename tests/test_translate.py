"""Translation end to end: train, eval, translate and attention maps through the command line, the recorded
split, exact resume, and bad input as one line with exit status 2 and nothing written."""

import json
import random
from pathlib import Path

import pytest

from stackrnn.cli import main
from stackrnn.train import open_run

LEXICON = {"the": "le", "red": "rouge", "cat": "chat", "big": "grand", "dog": "chien", "sees": "voit", "small": "petit",
           "bird": "oiseau", "eats": "mange", "fish": "poisson", "green": "vert", "likes": "aime"}
TINY = ["--task", "translate", "--embedding-size", "24", "--encoder-hidden-size", "24", "--encoder-num-layers", "1",
        "--decoder-hidden-size", "48", "--decoder-num-layers", "2", "--dropout", "0", "--batch-size", "32",
        "--min-freq", "1", "--lr", "0.01", "--valid-fraction", "0.1", "--test-fraction", "0.1", "--no-progress",
        "--log-every", "5", "--seed", "1"]


def _pairs(n: int, seed: int) -> list[str]:
    """English-like sentences of 2 to 6 words and their word-by-word 'French', as d2l's file writes them."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(list(LEXICON)) for _ in range(rng.randint(2, 6))]
        english = " ".join(words).capitalize() + "."
        french = " ".join(LEXICON[w] for w in words).capitalize() + "\u202f."  # U+202F, as in fra.txt
        lines.append(f"{english}\t{french}")
    return lines


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("parallel") / "toy.txt"
    path.write_text("\n".join(_pairs(900, 0)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, pair_file) -> Path:
    out = tmp_path_factory.mktemp("runs") / "toy"
    assert main(["train", "--data", str(pair_file), "--out", str(out), "--epochs", "15", *TINY]) == 0
    return out


def test_a_tiny_run_learns_the_word_by_word_language(toy_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(toy_run), "--split", "test", "--json"]) == 0
    greedy = json.loads(capsys.readouterr().out)
    assert greedy["bleu"] >= 90 and greedy["exact_match"] >= 0.8 and greedy["beam"] == 1
    assert greedy["pairs"] > 50 and "nrefs:1" in greedy["bleu_signature"]
    first = greedy["examples"][0]
    assert set(first) == {"source", "reference", "translation"} and first["source"].endswith(" .")
    assert main(["eval", str(toy_run), "--split", "test", "--beam", "4"]) == 0
    shown = capsys.readouterr().out
    assert "beam 4" in shown and "bleu" in shown and "translation:" in shown and "reference:" in shown


def test_translate_prints_one_translation_per_sentence_and_warns_of_unknown_words(toy_run, capsys):
    capsys.readouterr()
    assert main(["translate", str(toy_run), "The red cat sees the fish.", "the zebra eats .", "--json"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [r["source"] for r in results] == ["The red cat sees the fish.", "the zebra eats ."]
    assert results[0]["unknown"] == [] and results[1]["unknown"] == ["zebra"]
    assert "zebra" in captured.err and "<unk>" in captured.err
    assert main(["translate", str(toy_run), "The red cat sees the fish.", "--beam", "1"]) == 0
    _, task, model = open_run(toy_run, task="translate")
    assert capsys.readouterr().out.strip() == task.translate(model, ["The red cat sees the fish."], beam=1)[0]["translation"]


def test_translation_agrees_with_eval_and_unknown_words_become_unk(toy_run):
    cfg, task, model = open_run(toy_run, task="translate")
    tok = task.source_tokenizer
    assert tok.encode("zebra the") == [tok.unk_id, tok.stoi["the"]]
    examples = task.evaluate_split(model, "test", examples=1000)["examples"]
    assert len(examples) > 50
    # the same sentences one at a time, as a user types them, against eval's batched translations
    alone = [task.translate(model, [e["source"]], beam=1)[0]["translation"] for e in examples[:20]]
    assert alone == [e["translation"] for e in examples[:20]]


def test_the_attention_map_is_a_png_for_the_models_or_a_given_translation(toy_run, tmp_path, capsys):
    for extra in ([], ["--target", "Le chat voit."]):
        path = tmp_path / f"map{len(extra)}.png"
        assert main(["translate", str(toy_run), "The cat sees.", "--attention", str(path), *extra]) == 0
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
        assert str(path) in capsys.readouterr().err
    _, task, model = open_run(toy_run, task="translate")
    weights, source, target = task.attention_map(model, "The cat sees.", "Le chat voit.")
    assert source == ["the", "cat", "sees", "."] and target == ["le", "chat", "voit", ".", "<eos>"]
    assert weights.shape == (5, 4) and abs(float(weights.sum()) - 5) < 1e-4
    cut, _, target = task.attention_map(model, "The cat sees.", "le chat", ended=False)  # cut at a length limit
    assert target == ["le", "chat"] and cut.shape == (2, 4)


def test_the_map_is_drawn_for_the_printed_translation(toy_run, tmp_path, capsys, monkeypatch):
    import stackrnn.plot

    drawn = {}
    monkeypatch.setattr(stackrnn.plot, "plot_attention", lambda w, s, t, path, title=None: drawn.update(t=t) or Path(path))
    capsys.readouterr()
    assert main(["translate", str(toy_run), "The cat sees the red fish.", "--beam", "1", "--max-length", "3",
                 "--attention", str(tmp_path / "m.png")]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 3 and drawn["t"] == printed  # cut at 3 words: no <eos> row


def test_a_model_without_attention_has_no_map_and_prints_nothing(pair_file, tmp_path, capsys):
    out = tmp_path / "plain"
    assert main(["train", "--data", str(pair_file), "--out", str(out), "--epochs", "1", "--attention", "none",
                 "--no-input-feed", *TINY]) == 0
    capsys.readouterr()
    assert main(["translate", str(out), "The cat sees.", "--attention", str(tmp_path / "m.png")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no attention" in captured.err and not (tmp_path / "m.png").exists()


def test_the_split_is_recorded_and_keeps_a_source_sentences_translations_together(toy_run, pair_file):
    split = json.loads((toy_run / "split.json").read_text())
    lines = pair_file.read_text(encoding="utf-8").splitlines()
    held = {s: {lines[n - 1].split("\t")[0] for n in split[s]} for s in ("valid", "test")}
    assert held["valid"] and held["test"] and not held["valid"] & held["test"]
    train_sources = {line.split("\t")[0] for i, line in enumerate(lines, 1) if i not in set(split["valid"]) | set(split["test"])}
    assert not train_sources & (held["valid"] | held["test"])
    assert split["pairs"] == 900 and split["train_pairs"] == 900 - len(split["valid"]) - len(split["test"])


def test_resume_after_a_stop_ends_where_an_uninterrupted_run_ends(pair_file, tmp_path):
    args = ["--data", str(pair_file), "--epochs", "2", *TINY]
    assert main(["train", "--out", str(tmp_path / "whole"), *args]) == 0
    assert main(["train", "--out", str(tmp_path / "cut"), *args, "--max-steps", "30"]) == 0
    assert main(["train", "--resume", str(tmp_path / "cut"), "--max-steps", "1000"]) == 0
    last = lambda run: [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "valid"][-1]  # noqa: E731
    whole, cut = last(tmp_path / "whole"), last(tmp_path / "cut")
    assert (whole["step"], whole["loss"], whole["bleu"]) == (cut["step"], cut["loss"], cut["bleu"])


def test_bad_lines_are_skipped_with_a_counted_warning(tmp_path, capsys):
    data = tmp_path / "mixed.txt"
    data.write_text("\n".join(_pairs(300, 3) + ["no tab here", "Empty target.\t ", "one two three four five six seven "
                                                "eight nine ten eleven.\tun deux."]) + "\n", encoding="utf-8")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--max-length", "10",
                 *TINY]) == 0
    err = capsys.readouterr().err
    assert "skipped 3 of 303 lines" in err and "without a tab" in err


@pytest.mark.parametrize("content,expected", [
    ("just words\nand more words\n", "tab"),
    ("a b c d e f g h\tx\n" * 5, "max_length"),
])
def test_data_with_nothing_left_is_one_line_and_no_run(tmp_path, capsys, content, expected):
    data = tmp_path / "bad.txt"
    data.write_text(content, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--max-length", "3", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err
    assert not out.exists()


def test_a_changed_data_file_is_refused_rather_than_split_anew(toy_run, pair_file, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "toy.txt").write_text(pair_file.read_text(encoding="utf-8") + "The cat.\tLe chat.\n", encoding="utf-8")
    config = (toy_run / "config.toml").read_text()
    run = tmp_path / "run"
    run.mkdir()
    for f in toy_run.iterdir():
        if f.is_file():
            (run / f.name).write_bytes(f.read_bytes())
    (run / "config.toml").write_text(config.replace(str(pair_file), str(copy / "toy.txt")))
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "test"]) == 2
    assert "is not the file" in capsys.readouterr().err


@pytest.mark.parametrize("argv,expected", [
    (["--beam", "0", "hello"], "--beam"),
    (["--max-length", "0", "hello"], "--max-length"),
    (["one", "two", "--attention", "x.png"], "one sentence"),
    (["hello", "--attention", "x.jpg"], ".png"),
    (["hello", "--target", "bonjour"], "--attention"),
    ([], "arguments or with --file"),
])
def test_bad_translate_arguments_are_one_line(toy_run, capsys, argv, expected):
    capsys.readouterr()
    assert main(["translate", str(toy_run), *argv]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and expected in captured.err and captured.out == ""


@pytest.mark.parametrize("argv,expected", [
    (["--beam", "0"], "--beam"),
    (["--beam", "-1"], "--beam"),
    (["--max-length", "0"], "--max-length"),
    (["--length-penalty", "-1"], "--length-penalty"),
    (["--examples", "-1"], "--examples"),
])
def test_bad_eval_arguments_are_one_line(toy_run, capsys, argv, expected):
    capsys.readouterr()
    assert main(["eval", str(toy_run), "--split", "test", *argv]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and expected in captured.err and captured.out == ""


def test_eval_scores_every_pair_of_a_given_file_whatever_the_training_length_limit(toy_run, tmp_path, capsys):
    data = tmp_path / "long.txt"
    data.write_text("The cat sees the red fish and the big dog likes the green bird.\tLe chat voit le poisson rouge "
                    "et le grand chien aime le oiseau vert.\nThe cat.\tLe chat.\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["eval", str(toy_run), "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 2


def test_commands_of_other_tasks_refuse_translation_runs_and_back(toy_run, trained_run, capsys):
    assert main(["predict", str(toy_run), "hello"]) == 2
    assert main(["translate", str(trained_run), "hello"]) == 2
    assert main(["eval", str(trained_run), "--beam", "3"]) == 2
    assert main(["eval", str(toy_run), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert "this is a language-model run" in err and "is a translation run" in err and "for translation runs" in err and "for classification runs" in err


def test_summary_tabulates_the_translator(capsys):
    assert main(["summary", "--task", "translate", "--vocab-size", "100", "--decoder-num-layers", "3"]) == 0
    table = capsys.readouterr().out
    assert "encoder" in table and "decoder" in table and "attention" in table


def test_the_learnt_attention_aligns_each_word_with_its_source_word(toy_run):
    """The toy language translates word for word in order, so target word i should attend most to source word i."""
    _, task, model = open_run(toy_run, task="translate")
    hits = total = 0
    for e in task.evaluate_split(model, "test", examples=30)["examples"]:
        weights, source, target = task.attention_map(model, e["source"], e["reference"])
        words = len(source) - 1  # the final "." aside
        for i in range(words):
            hits += int(weights[i, :words].argmax()) == i
            total += 1
    assert total > 50 and hits / total >= 0.9, (hits, total)
