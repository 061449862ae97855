"""Linear probes: a planted property is found in its layer, the probe's fit and split, the labellers, the nested
language, and probe_run on a trained run."""

import json

import pytest
import torch

from stackrnn.errors import InputError
from stackrnn.inspect.probes import (MIN_TOKENS, bracket_depth_labels, char_class_labels, fit_probe, held_out,
                                     nested_text, position_in_word_labels, probe_layers, probe_run, property_labels,
                                     token_back_labels)


def _planted_states(k: int, layers: int = 4, dim: int = 24):
    """Bracket depth of a nested text, linearly decodable from layer k's states only: layer k holds a random
    projection of the depth's one-hot code plus noise, every other layer noise alone."""
    labels = property_labels("bracket_depth", list(nested_text(3000, seed=1)))[0]
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(len(labels), dim, generator=g) for _ in range(layers)]  # (N, D) each
    code = torch.nn.functional.one_hot(labels, 4).float()  # (N, 4)
    states[k] = states[k] + 3 * code @ torch.randn(4, dim, generator=g)
    return states, labels


@pytest.mark.parametrize("k", [0, 2])
def test_probes_find_the_planted_layer(k):
    states, labels = _planted_states(k)
    fits = probe_layers(states, {"bracket_depth": labels})["bracket_depth"]
    accuracy = [f["accuracy"] for f in fits]
    assert max(range(len(fits)), key=accuracy.__getitem__) == k
    assert accuracy[k] > 0.97
    chance = max(torch.bincount(labels).tolist()) / len(labels)
    assert all(abs(a - chance) < 0.1 for layer, a in enumerate(accuracy) if layer != k), accuracy


def test_fit_probe_separable_random_and_deterministic():
    g = torch.Generator().manual_seed(0)
    separable = torch.randint(3, (1000,), generator=g)
    centres = 4 * torch.randn(3, 5, generator=g)
    x = centres[separable] + 0.3 * torch.randn(1000, 5, generator=g)  # 3 classes, far apart: separable by a margin
    fit = fit_probe(x, separable)
    assert fit["accuracy"] == 1.0 and fit["train_accuracy"] == 1.0 and fit["n_train"] == 800 and fit["n_test"] == 200
    noise = torch.randint(3, (1000,), generator=g)
    fit = fit_probe(x, noise)
    assert abs(fit["accuracy"] - fit["majority"]) < 0.1 and fit["accuracy"] < 0.45
    assert fit_probe(x, noise, seed=4) == fit_probe(x, noise, seed=4)
    unscored = separable.clone()
    unscored[:100] = -1  # left out on both sides
    fit = fit_probe(x, unscored)
    assert fit["n_train"] + fit["n_test"] == 900


def test_held_out_blocks_are_contiguous():
    test = held_out(1000, seed=3)
    assert int(test.sum()) == 200
    starts = [i for i in range(1000) if test[i] and (i == 0 or not test[i - 1])]
    assert len(starts) <= 2 and all(s % 100 == 0 for s in starts)  # whole blocks of 100
    assert not torch.equal(held_out(1000, seed=3), held_out(1000, seed=4))
    with pytest.raises(InputError, match="train_fraction"):
        held_out(1000, train_fraction=1.0)
    with pytest.raises(InputError, match="blocks"):
        held_out(5)


def test_labellers():
    assert char_class_labels(list("a1 .")) == ([0, 1, 2, 3], ["letter", "digit", "space", "other"])
    assert position_in_word_labels(list("hello world!"), max_position=3) == (
        [1, 2, 3, 3, 3, 0, 1, 2, 3, 3, 3, 0], ["0", "1", "2", "3+"])
    assert bracket_depth_labels(list("a(b(c))d"))[0] == [0, 1, 1, 2, 2, 2, 1, 0]
    assert bracket_depth_labels(list("((((x"), max_depth=3)[0] == [1, 2, 3, 3, 3]
    assert token_back_labels(list("abcab"), 1, top=2) == ([-1, 0, 1, 2, 0], ["a", "b", "other"])
    labels, classes = property_labels("token_back_2", list("abcab"))
    assert labels.tolist() == [-1, -1, 0, 1, 2] and classes == ["a", "b", "c", "other"]
    with pytest.raises(InputError, match="unknown probe property 'colour'"):
        property_labels("colour", list("ab"))
    with pytest.raises(InputError, match="n >= 1"):
        property_labels("token_back_0", list("ab"))


def test_nested_text_is_balanced_and_bounded():
    text = nested_text(2000, max_depth=3, letters="xy", seed=5)
    assert text == nested_text(2000, max_depth=3, letters="xy", seed=5) != nested_text(2000, max_depth=3, letters="xy", seed=6)
    assert 2000 <= len(text) <= 2003 and set(text) == set("()xy")
    depths = bracket_depth_labels(list(text), max_depth=10)[0]
    assert max(depths) == 3 and text.count("(") == text.count(")")
    counts = torch.bincount(torch.tensor(depths)).tolist()
    assert min(counts) > 0.3 * max(counts)  # every depth common


def test_probe_run_writes_probes(trained_run, text_file, tmp_path):
    text = text_file.read_text()[:1500] + nested_text(600, letters="abcd")
    out = tmp_path / "probes"
    result = probe_run(trained_run, text, out=out, properties=["char_class", "bracket_depth", "token_back_1"])
    saved = json.loads((out / "probes.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert [entry["name"] for entry in saved["layers"]] == ["embedding", "layer 1 (lstm)", "layer 2 (lstm)"]
    assert set(saved["properties"]) == {"char_class", "bracket_depth", "token_back_1"}
    assert saved["tokens"] == len(text) and saved["files"] == [str(out / "probes.png"), str(out / "probes.json")]
    back = [entry["accuracy"]["token_back_1"] for entry in saved["layers"]]
    assert max(back[1:]) > back[0] + 0.2  # the previous character is in the recurrent states, not the embedding
    plt = pytest.importorskip("matplotlib.pyplot")
    image = plt.imread(str(out / "probes.png"))
    assert image.shape[0] > 300 and image.std() > 0.01


def test_probe_run_bad_input(trained_run, tmp_path):
    with pytest.raises(InputError, match="not in the model's vocabulary"):
        probe_run(trained_run, "a\u2603" * 100)
    with pytest.raises(InputError, match=f"too few to fit and test probes: give at least {MIN_TOKENS}"):
        probe_run(trained_run, "abc")
    with pytest.raises(InputError, match="unknown probe property"):
        probe_run(trained_run, "abc " * 50, properties=["nope"])
    with pytest.raises(InputError, match="empty"):
        probe_run(trained_run, "")
    with pytest.raises(InputError, match="does not exist"):
        probe_run(tmp_path / "nothing", "abc " * 50)
    other = tmp_path / "classifier"
    other.mkdir()
    (other / "config.toml").write_text('task = "classify"\n')
    with pytest.raises(InputError, match="is a classification run, not a language-model run"):
        probe_run(other, "abc " * 50)


def test_the_probe_command_prints_accuracy_per_layer(trained_run, text_file, tmp_path, capsys):
    from stackrnn.cli import main

    out = tmp_path / "probes"
    capsys.readouterr()
    assert main(["probe", str(trained_run), "--text-file", str(text_file), "--max-tokens", "1500",
                 "--properties", "char_class,token_back_1", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["layer", "char_class", "token_back_1"] and lines[1].startswith("(majority)")
    assert [line.split()[0] for line in lines[2:5]] == ["embedding", "layer", "layer"]
    assert (out / "probes.json").is_file() and (out / "probes.png").is_file()


@pytest.mark.parametrize("argv,expected", [
    (["--text", "abc", "--nested", "50"], "one of them"),
    (["--nested", "0"], "--nested"),
    (["--text-file", "/nonexistent.txt"], "no such file"),
    (["--nested", "500", "--properties", "colour"], "colour"),
    (["--nested", "500", "--max-tokens", "-5"], "--max-tokens"),
    (["--nested", "500", "--max-tokens", "50"], "--max-tokens"),
])
def test_bad_probe_arguments_are_one_line(trained_run, tmp_path, capsys, argv, expected):
    from stackrnn.cli import main

    assert main(["probe", str(trained_run), *argv, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err


def test_probe_never_overwrites_a_folder_with_files(trained_run, tmp_path, capsys):
    from stackrnn.cli import main

    out = tmp_path / "p"
    out.mkdir()
    (out / "probes.json").write_text("earlier results")
    assert main(["probe", str(trained_run), "--nested", "500", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "probes.json").read_text() == "earlier results"
