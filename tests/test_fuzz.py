"""Fuzzing with Hypothesis (strategies and targets in fuzz_strategies.py): whatever malformed input a config
file, a command line, a data file or a run directory holds, the library loads it or raises its InputError with
one line (status 2 from the command line), never another exception. A few hundred cases here, derandomized so
CI is deterministic; scripts/fuzz.py runs 10,000. Below them, plain regression tests for each input the fuzzing
found that ended in another exception."""

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings

from stackrnn.cli import main
from stackrnn.errors import InputError
from tests.fuzz_strategies import TARGETS, check_one, tiny_run

#: cases per target: a few hundred in all, the slow targets (tiny runs copied per case) fewer
EXAMPLES = {"corpus": 60, "labelled": 80, "parallel": 60, "series": 80, "vocab": 50, "vectors": 50, "config": 60, "run": 40, "metrics": 40,
            "cli": 80}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_malformed_input_ends_in_input_error(name):
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES.get(name, 30), deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(target.strategy)
    def check(example):
        check_one(target, example)  # "ok", "input error" or "skipped"; anything else fails the test

    check()


# -- regressions: inputs the fuzzing found -------------------------------------------------------------------------
def _raises_one_line(f, match: str) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        f()
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("encoding", ["undefined", "idna"])
def test_a_codec_that_refuses_without_saying_where(tmp_path, encoding):
    # "undefined" raises a bare UnicodeError on every decode, idna one on a label that does not round-trip: not
    # UnicodeDecodeError, which says where
    from stackrnn.data.labelled import read_labelled
    from stackrnn.data.parallel import read_parallel
    from stackrnn.data.vectors import load_vectors

    path = tmp_path / "data.txt"
    path.write_bytes(b"xn--a-")
    _raises_one_line(lambda: read_labelled(path, encoding=encoding), f"data.txt is not {encoding} text")
    _raises_one_line(lambda: read_parallel(path, encoding=encoding), f"data.txt is not {encoding} text")
    _raises_one_line(lambda: load_vectors(path, ["<pad>", "<unk>", "pos"], encoding=encoding),
                     f"data.txt line 1 is not {encoding} text")


def test_text_file_in_a_codec_that_refuses_everything(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("abc")
    assert main(["inspect", str(tmp_path / "run"), "--text-file", str(tmp_path / "t.txt"), "--encoding", "undefined",
                 "--out", str(tmp_path / "out")]) == 2
    assert "is not undefined text" in capsys.readouterr().err


@pytest.mark.parametrize("text, match", [("[model]\nhidden_size = " + "9" * 5000, "integer string conversion"),
                                         ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply")])
def test_config_with_a_huge_integer_or_deep_nesting(tmp_path, capsys, text, match):
    (tmp_path / "c.toml").write_text(text)
    assert main(["train", "--config", str(tmp_path / "c.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not valid TOML" in err and match in err


@pytest.mark.parametrize("text, match", [('{"itos": [' + "1" * 5000 + "]}", "integer string conversion"),
                                         ("[" * 100_000 + "]" * 100_000, "nested too deeply")])
def test_json_files_of_a_run_with_a_huge_integer_or_deep_nesting(tmp_path, text, match):
    from stackrnn.data.tokenizers import Tokenizer
    from stackrnn.run import RunDir

    (tmp_path / "vocab.json").write_text(text)
    (tmp_path / "trainer.json").write_text(text)
    _raises_one_line(lambda: Tokenizer.load(tmp_path / "vocab.json"), f"cannot be read .*{match}")
    _raises_one_line(lambda: RunDir(tmp_path).load_json("trainer.json"), f"trainer.json is corrupted .*{match}")


def test_damaged_metrics_lines_are_passed_over(tmp_path):
    # lines that are not a JSON record with a numeric step: a number, a list, NaN, a string step, no step, a huge
    # integer, deep nesting, bytes that are not UTF-8; and records whose figures are not numbers
    from stackrnn.plot import plot_runs
    from stackrnn.run import METRICS, RunDir

    good = {"step": 2, "split": "train", "loss": 1.5}
    damaged = [b"1.5", b"[1]", b"NaN", b'{"step": "x"}', b'{"split": "train", "loss": 1.0}', b"1" * 5000,
               b"[" * 100_000 + b"]" * 100_000, b'{"step": 1, "split": "train", "loss": 1.0}\xff',
               b'{"step": 3, "split": "train", "loss": {"a": 1}}',
               b'{"step": 4, "split": "grad", "layer_grad_norm": 1, "step_grad_norm": [[1.0]]}']
    (tmp_path / METRICS).write_bytes(b"\n".join([*damaged, json.dumps(good).encode()]) + b"\n")
    run = RunDir(tmp_path)
    assert run.read_metrics()[-1] == good and all(isinstance(r["step"], (int, float)) for r in run.read_metrics())
    run.trim_metrics(10)
    assert good in run.read_metrics()
    assert [p.name for p in plot_runs([tmp_path], tmp_path / "plots")] == ["loss.png"]


def test_bad_byte_in_a_codec_without_a_replace_handler(tmp_path):
    # idna reports a non-ASCII byte as UnicodeDecodeError, but cannot decode the text before it with errors="replace"
    from stackrnn.data.labelled import read_labelled

    (tmp_path / "data.txt").write_bytes(b"pos good\n\xff")
    _raises_one_line(lambda: read_labelled(tmp_path / "data.txt", encoding="idna"), r"data.txt line 2 is not idna text \(byte 0xff")


@pytest.mark.parametrize("line, match", [('{"text": "a", "label": ' + "1" * 5000 + "}", "integer string conversion"),
                                         ("[" * 100_000 + "]" * 100_000, "nested too deeply")])
def test_jsonl_line_with_a_huge_integer_or_deep_nesting(tmp_path, line, match):
    from stackrnn.data.labelled import read_labelled

    (tmp_path / "d.jsonl").write_text('{"text": "fine", "label": 1}\n' + line + "\n")
    _raises_one_line(lambda: read_labelled(tmp_path / "d.jsonl"), f"d.jsonl line 2 cannot be read as JSON .*{match}")


@pytest.mark.parametrize("argv", [["train", "--task"], ["train", "--config"], ["summary", "--resume"],
                                  ["train", "--hidden-size", "8", "--config"]])
def test_option_without_its_value_before_the_task_is_known(capsys, argv):
    # the pre-parser that looks for the task printed a usage dump under the wrong program name
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and err.startswith("stackrnn") and ": error: " in err


@pytest.mark.parametrize("header, shown", [("1 " + "9" * 5000, "9" * 20 + "..."), ("1 10000000000", "10000000000")])
def test_word2vec_header_with_a_huge_dim(tmp_path, header, shown):
    from stackrnn.data.vectors import load_vectors

    (tmp_path / "v.txt").write_text(header + "\nthe 0.5\n")
    _raises_one_line(lambda: load_vectors(tmp_path / "v.txt", ["<pad>", "<unk>", "the"]),
                     f"v.txt line 1: the word2vec header 'count dim' has dim {shown}: expected a vector size from 1")


def test_header_with_a_digit_that_is_not_decimal_is_a_glove_line(tmp_path):
    # "²".isdigit() but int("²") fails: the line is a word with one value, not a word2vec header
    from stackrnn.data.vectors import load_vectors

    (tmp_path / "v.txt").write_text("2 ²\nthe 0.5\n")
    _raises_one_line(lambda: load_vectors(tmp_path / "v.txt", ["<pad>", "<unk>", "the"]), r"v.txt line 1: '²' is not a number")


@pytest.mark.parametrize("step", ["", "x", "²", "1" * 5000])
def test_checkpoint_step_that_is_not_a_number(tmp_path, step):
    import torch
    from safetensors.torch import save_file

    from stackrnn.run import RunDir

    save_file({"w": torch.zeros(1)}, str(tmp_path / "last.safetensors"), metadata={"step": step})
    _raises_one_line(lambda: RunDir(tmp_path).tensors_step("last.safetensors"), "last.safetensors is corrupted .its step")


def test_classifier_vocabulary_without_pad(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run("classify"), run)
    vocab = json.loads((run / "vocab.json").read_text())
    vocab["itos"] = [t for t in vocab["itos"] if t != "<pad>"]
    (run / "vocab.json").write_text(json.dumps(vocab))
    assert main(["predict", str(run), "a text"]) == 2
    assert "vocab.json lacks <pad>, which a classifier's vocabulary holds" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["predict", "\r\n", "a text"], ["eval", "a\nb"], ["plot", "run", "--out", "x", "\n"]])
def test_line_breaks_in_arguments_stay_on_the_error_line(capsys, argv):
    # a run directory named "\r\n" went into the message as it is: the one error line became two
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "\r" not in err and ": error: " in err


def test_missing_checkpoint_file_is_missing_not_corrupted(tmp_path):
    from stackrnn.run import RunDir

    _raises_one_line(lambda: RunDir(tmp_path).tensors_step("optimizer.safetensors"),
                     "optimizer.safetensors is missing: the run directory is incomplete")


@pytest.mark.parametrize("name, match", [("token_back_" + "1" * 5000, "more positions back than a text has tokens"),
                                         ("token_back_\u0663", "unknown probe property")])
def test_probe_property_with_a_huge_or_non_ascii_n(name, match):
    from stackrnn.inspect.probes import property_labels

    _raises_one_line(lambda: property_labels(name, list("abc")), match)
