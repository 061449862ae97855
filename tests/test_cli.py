"""The command line: help text for every option, and bad input as one line on stderr with exit status 2,
no traceback, and nothing in an existing run directory changed."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from stackrnn.cli import main, make_parser

from .conftest import TINY


def _snapshot(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _fails(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["train", "generate", "eval", "summary", "plot"])
def test_every_option_has_help(command):
    parser = make_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.dest != "help":
            assert action.help and len(action.help) > 10, action.dest
    text = sub.format_help()
    assert "--hidden-size" in text or command in ("generate", "eval", "plot")


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]


def test_empty_and_whitespace_corpora(tmp_path, capsys):
    for content in ("", "  \n\t \n"):
        f = tmp_path / "empty.txt"
        f.write_text(content)
        _fails(capsys, ["train", "--data", str(f), "--out", str(tmp_path / "run"), *TINY], "empty")
        assert not (tmp_path / "run").exists()  # nothing created for bad data


def test_unknown_dataset(tmp_path, capsys):
    line = _fails(capsys, ["train", "--dataset", "wikitext-9", "--out", str(tmp_path / "r")], "wikitext-9")
    assert "timemachine" in line  # lists the known ones


def test_config_key_that_does_not_exist_and_wrong_type(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nhidden_sise = 10\n")
    _fails(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")], "unknown key 'hidden_sise'")
    cfg.write_text("[model]\nhidden_size = 'big'\n")
    _fails(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")], "model.stack.hidden_size: expected an integer, got 'big'")
    cfg.write_text("[trian]\nepochs = 1\n")
    _fails(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")], "unknown section [trian]")
    cfg.write_text("[model\n")
    _fails(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")], "not valid TOML")
    _fails(capsys, ["train", "--config", str(tmp_path / "nope.toml")], "does not exist")
    _fails(capsys, ["train", "--hidden-size", "many"], "--hidden-size: expected an integer, got 'many'")


@pytest.mark.parametrize("flag, value", [("--hidden-size", "0"), ("--num-layers", "0"), ("--batch-size", "0"),
                                         ("--num-steps", "-1"), ("--epochs", "0"), ("--dropout", "1.0")])
def test_sizes_below_one(tmp_path, text_file, capsys, flag, value):
    # named as the user wrote it: the flag, and the interval it must lie in
    _fails(capsys, ["train", "--data", str(text_file), "--out", str(tmp_path / "r"), flag, value],
           f"{flag}: expected {'a number in [0, 1)' if flag == '--dropout' else 'an integer >= 1'}, got")


def test_existing_run_directory_is_never_overwritten(trained_run, text_file, capsys):
    before = _snapshot(trained_run)
    _fails(capsys, ["train", "--data", str(text_file), "--out", str(trained_run), *TINY], "already exists")
    _fails(capsys, ["train", "--resume", str(trained_run), "--hidden-size", "64"], "model.stack.hidden_size")
    _fails(capsys, ["generate", str(trained_run), "--prefix", "\u00e9\u00e9 \u4e2d"], "not in the model's vocabulary")
    _fails(capsys, ["generate", str(trained_run), "--prefix", "The", "--length", "0"], "--length")
    assert _snapshot(trained_run) == before


def test_missing_and_incomplete_run_directories(tmp_path, trained_run, capsys):
    _fails(capsys, ["generate", str(tmp_path / "nothing"), "--prefix", "a"], "does not exist")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.toml").write_bytes((trained_run / "config.toml").read_bytes())
    _fails(capsys, ["eval", str(partial)], "lacks vocab.json, model.safetensors")
    _fails(capsys, ["train", "--resume", str(partial)], "lacks")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_corrupted_weights(tmp_path, trained_run, capsys, damage):
    run = tmp_path / "copy"
    run.mkdir()
    for p in trained_run.iterdir():
        (run / p.name).write_bytes(p.read_bytes())
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    _fails(capsys, ["generate", str(run), "--prefix", "The"], "corrupted or truncated")
    _fails(capsys, ["eval", str(run)], "model.safetensors")


def test_eval_without_test_split(trained_run, tmp_path, text_file, capsys):
    out = tmp_path / "novalid"
    assert main(["train", "--data", str(text_file), "--out", str(out), "--epochs", "1", "--max-minutes", "0.002", *TINY]) == 0
    capsys.readouterr()
    _fails(capsys, ["eval", str(out), "--split", "test"], "has no test split")


def test_summary_command(capsys, text_file):
    assert main(["summary", "--data", str(text_file), "--num-layers", "3", "--hidden-size", "16"]) == 0
    out = capsys.readouterr().out
    assert out.count("LSTM") == 3 and "Total params" in out


def test_console_script_entry_point(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[data]\nbatch_size = 0\n")
    result = subprocess.run([sys.executable, "-m", "stackrnn.cli", "train", "--config", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"stackrnn train: error: {bad}: data.batch_size: expected an integer >= 1, got 0"


def test_choices_name_the_flag_or_the_key(tmp_path, capsys):
    _fails(capsys, ["train", "--cell", "lsm"], "--cell: expected one of rnn_tanh, rnn_relu, gru, lstm, got 'lsm'")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\noptimizer = 'rmsprop'\n")
    _fails(capsys, ["train", "--config", str(cfg)], "train.optimizer: expected one of sgd, adam, adamw, got 'rmsprop'")


@pytest.mark.parametrize("flag, value", [("--lr", "nan"), ("--clip", "inf"), ("--max-minutes", "nan"), ("--init-range", "inf")])
def test_non_finite_numbers(tmp_path, text_file, capsys, flag, value):
    _fails(capsys, ["train", "--data", str(text_file), "--out", str(tmp_path / "r"), flag, value], "expected a finite number")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("layers, match", [("[]", "at least one layer"), ("[{hidden_size = 8, bias = 'yes'}]", "bias"),
                                           ("[{cell = ['lstm'], hidden_size = 8}]", "cell")])
def test_bad_layer_tables(tmp_path, text_file, capsys, layers, match):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[model]\nlayers = {layers}\n")
    _fails(capsys, ["train", "--config", str(cfg), "--data", str(text_file), "--out", str(tmp_path / "r")], match)
    assert not (tmp_path / "r").exists()


def test_nothing_is_created_when_the_data_cannot_fill_a_batch_or_spell_the_prefix(tmp_path, text_file, capsys):
    _fails(capsys, ["train", "--data", str(text_file), "--out", str(tmp_path / "r"), "--batch-size", "100000"], "too few")
    _fails(capsys, ["train", "--data", str(text_file), "--out", str(tmp_path / "r"), "--sample-prefix", "\u4e2d"], "vocabulary")
    _fails(capsys, ["train", "--data", str(text_file), "--out", str(tmp_path / "r"), "--seed", "-1"], "train.seed")
    assert not (tmp_path / "r").exists()


def test_summary_vocab_size(capsys):
    _fails(capsys, ["summary", "--vocab-size", "-1"], "--vocab-size: expected an integer >= 1, got -1")


def test_resume_accepts_the_run_s_own_values_and_refuses_only_changes(tmp_path, text_file, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", "--data", str(text_file), "--out", str(out), *TINY, "--max-steps", "2"]) == 0
    # the same command line again, with --resume for --out (and the data named relative to here, as users do)
    monkeypatch.chdir(text_file.parent)
    assert main(["train", "--data", text_file.name, "--resume", str(out), *TINY, "--max-steps", "4"]) == 0
    capsys.readouterr()
    line = _fails(capsys, ["train", "--resume", str(out), *TINY, "--hidden-size", "64", "--num-layers", "2"],
                  "these options would change it: model.stack.hidden_size.")
    assert "num_layers" not in line


@pytest.mark.parametrize("task, flag", [("lm", "residual"), ("translate", "encoder-residual"), ("translate", "decoder-residual")])
@pytest.mark.parametrize("given, value", [([], False), (["--{}"], True), (["--no-{}"], False), (["--{}", "3"], 3),
                                          (["--{}=2"], 2), (["--{}", "true"], True), (["--{}", "--lr", "0.1"], True)])
def test_residual_options_are_a_switch_or_a_layer_number(task, flag, given, value):
    from stackrnn.cli import overrides_from
    from stackrnn.train import build_config

    layers = ["--num-layers", "3"] if task == "lm" else ["--encoder-num-layers", "3"]
    args = make_parser(task).parse_args(["train", *layers, *(a.format(flag) for a in given)])
    cfg = build_config(None, overrides_from(args), task)
    stack = getattr(cfg.model, {"residual": "stack", "encoder-residual": "encoder", "decoder-residual": "decoder"}[flag])
    got = stack.residual
    assert got == value and type(got) is type(value)
    assert "[K]" in make_parser(task)._subparsers._group_actions[0].choices["train"].format_help()


def test_residual_layer_one_is_a_layer_number_not_true(tmp_path, capsys):
    _fails(capsys, ["summary", "--residual", "1", "--vocab-size", "10"], "residual")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nnum_layers = 3\nresidual = 3\n")
    assert main(["summary", "--config", str(cfg), "--vocab-size", "10"]) == 0


@pytest.mark.parametrize("task", ["lm", "classify", "translate"])
def test_help_states_each_default_once(task):
    for command in ("train", "summary"):
        sub = make_parser(task)._subparsers._group_actions[0].choices[command]
        for action in sub._actions:
            assert (action.help or "").count("default:") <= 1, action.help


def _usage_error(capsys, argv) -> str:
    """The one line of an error argparse reports (it exits with status 2 rather than returning it)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    return err[0]


def test_unknown_options_are_the_command_s_and_suggest_the_nearest(capsys):
    line = _usage_error(capsys, ["train", "--hiden-size", "8"])
    assert line.startswith("stackrnn train: error: unrecognized arguments: --hiden-size 8"), line
    assert "did you mean --hidden-size?" in line
    line = _usage_error(capsys, ["generate", "RUN", "--prefix", "a", "--temprature=0.5"])
    assert line.startswith("stackrnn generate: error:") and "did you mean --temperature?" in line, line
    line = _usage_error(capsys, ["train", "--zzzzzz"])
    assert line.startswith("stackrnn train: error:") and "did you mean" not in line, line


def test_mistyped_config_keys_and_sections_suggest_the_nearest(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nhidden_sise = 10\n")
    _fails(capsys, ["train", "--config", str(cfg)], "unknown key 'hidden_sise' (did you mean 'hidden_size'?)")
    cfg.write_text("[trian]\nepochs = 1\n")
    _fails(capsys, ["train", "--config", str(cfg)], "unknown section [trian] (did you mean [train]?)")


def test_counts_of_one_are_singular(tmp_path, text_file, capsys):
    short = tmp_path / "short.txt"
    short.write_text(text_file.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    assert main(["train", "--data", str(short), "--out", str(tmp_path / "a"), *TINY, "--max-steps", "1"]) == 0
    assert "after 1 step, 0 epochs," in capsys.readouterr().out
    assert main(["train", "--data", str(short), "--out", str(tmp_path / "b"), *TINY, "--epochs", "1"]) == 0
    assert " steps, 1 epoch," in capsys.readouterr().out


def test_several_prefixes_are_printed_apart(trained_run, capsys):
    assert main(["generate", str(trained_run), "--prefix", "The", "--prefix", "and", "--length", "5", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    first, second = out.split("--- prefix 'and' ---\n")  # (a sample may hold line breaks of its own)
    assert first.startswith("--- prefix 'The' ---\nThe") and second.startswith("and")
    assert main(["generate", str(trained_run), "--prefix", "The", "--length", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("The")  # one prefix: the text alone, as before


def test_a_language_model_reads_its_data_in_the_given_encoding(tmp_path, text_file, capsys):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(("caf\u00e9 au lait, s\u00e9ance tenante. " * 200).encode("latin-1"))
    _fails(capsys, ["summary", "--data", str(latin1)], "--encoding")
    assert main(["summary", "--data", str(latin1), "--encoding", "latin-1"]) == 0
