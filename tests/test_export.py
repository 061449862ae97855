"""stackrnn export: every task's model, and a stack torch.nn cannot express, as ONNX (run by onnxruntime) and
torch.export graphs whose outputs equal PyTorch's within 1e-4 at lengths and batch sizes other than the export
example's, with the state in and out step by step; every forecasting head's graphs (the quantile head's one, a
distribution head's context read and step) at several batch sizes; bad input is one line and exit 2, and nothing
is overwritten. The ONNX cases skip without onnx, onnxscript and onnxruntime (the export extra)."""

import json

import numpy as np
import pytest
import torch

import stackrnn
from stackrnn.cli import main
from stackrnn.export import EXAMPLE_STEPS, MANIFEST, export
from stackrnn.graphs import flatten, state_spec, unflatten

from .export_runs import FORECASTS

FORMATS = ("onnx", "torch-export")
TASKS = ("lm", "mixed", "classify", "translate")


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("name", TASKS)
def test_export_equals_pytorch_at_other_lengths_and_batches(export_runs, name, format):
    result = export_runs.exported(name, format)
    assert result.largest <= 1e-4, result.checks
    checks = " | ".join(c["check"] for c in result.checks)
    # lengths shorter and longer than the example's, one step alone, batches other than the example's
    assert "=1 B=1" in checks and f"={2 * EXAMPLE_STEPS + 5} B=4" in checks, checks
    if name in ("lm", "mixed"):
        assert "generation step 3 (T=1, B=3, state carried)" in checks
    if name == "translate":
        assert "decoder step 2" in checks
    manifest = json.loads((result.out / MANIFEST).read_text(encoding="utf-8"))
    task = "lm" if name == "mixed" else name
    assert manifest["task"] == task and manifest["exported_as"] == format
    assert manifest["parity"]["largest"] == result.largest and manifest["parity"]["tolerance"] == 1e-4
    for graph in manifest["graphs"].values():
        assert (result.out / graph["file"]).is_file()
        assert all(d in ("T", "S", "B") or isinstance(d, int) for i in graph["inputs"] for d in i["shape"])
    assert sorted(p.name for p in result.out.iterdir()) == sorted(result.files)


def test_onnx_state_in_and_out_matches_the_mixed_stack_step_by_step(export_runs):
    """The mixed stack's ONNX file run directly: a batch longer than any the export checked, then steps of one token
    with the state fed back, against the PyTorch model stepping with its own state."""
    import onnxruntime

    result = export_runs.exported("mixed", "onnx")
    model = stackrnn.load(export_runs.run("mixed")).model
    session = onnxruntime.InferenceSession(str(result.out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [s["name"] for s in state_spec(model.rnn)]
    g = torch.Generator().manual_seed(5)
    tokens, lengths = torch.randint(0, model.vocab_size, (23, 5), generator=g), torch.tensor([23, 1, 9, 17, 4])
    want_state = got_state = [0.3 * torch.randn(s["shape"][0], 5, s["shape"][2], generator=g) for s in state_spec(model.rnn)]
    for step in range(3):
        with torch.no_grad():
            logits, _, new = model(tokens, state=unflatten(model.rnn, want_state), lengths=lengths)
        want_state = flatten(new)
        out = session.run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy(),
                                 **{n: t.numpy() if isinstance(t, torch.Tensor) else t for n, t in zip(names, got_state)}})
        got_state = out[1:]
        for got, want in zip(out, [logits, *want_state]):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)
        tokens, lengths = logits[lengths - 1, torch.arange(5)].argmax(-1)[None], torch.ones(5, dtype=torch.long)


def test_the_cli_prints_the_largest_difference(export_runs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export", str(export_runs.run("classify")), "--format", "torch-export", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "largest difference" in line and "tolerance 0.0001" in line and "\n" not in line
    assert (out / "model.pt2").is_file() and (out / MANIFEST).is_file()


def _fails(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("stackrnn export: error: "), err
    return err


def test_bad_input_is_one_line_and_overwrites_nothing(export_runs, tmp_path, capsys):
    run = str(export_runs.run("classify"))
    assert "config.toml" in _fails(capsys, str(tmp_path), "--format", "torch-export", "--out", str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()
    _fails(capsys, run, "--format", "tflite", "--out", str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
    file = tmp_path / "file.txt"
    file.write_text("keep me", encoding="utf-8")
    assert "is a file" in _fails(capsys, run, "--format", "torch-export", "--out", str(file))
    assert file.read_text(encoding="utf-8") == "keep me"
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep me", encoding="utf-8")
    assert "not empty" in _fails(capsys, run, "--format", "torch-export", "--out", str(full))
    assert [p.name for p in full.iterdir()] == ["mine.txt"]
    # a parity failure (a tolerance nothing meets) writes nothing, not even a temporary folder
    err = _fails(capsys, run, "--format", "torch-export", "--out", str(tmp_path / "c"), "--tolerance", "1e-30")
    assert "parity check failed" in err and "nothing was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "full"]


def test_a_bad_tolerance_and_format_from_python(export_runs, tmp_path):
    with pytest.raises(stackrnn.InputError, match="--tolerance"):
        export(export_runs.run("classify"), "torch-export", tmp_path / "x", tolerance=0)
    with pytest.raises(stackrnn.InputError, match="--format"):
        export(export_runs.run("classify"), "coreml", tmp_path / "x")


# -- forecasting -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("head", list(FORECASTS))
def test_forecasters_export_equal_to_pytorch_at_several_batch_sizes(export_runs, head, format):
    """The quantile head's quantiles, or a distribution head's context read and its horizon's steps fed their own
    means (parameters, state, and the path against Forecaster.forward), at batch sizes 1, 2, 3 and 5."""
    result = export_runs.exported(f"forecast_{head}", format)
    assert result.largest <= 1e-4, result.checks
    checks = " | ".join(c["check"] for c in result.checks)
    assert all(f"B={b}" in checks for b in (1, 2, 3, 5)), checks
    manifest = json.loads((result.out / MANIFEST).read_text(encoding="utf-8"))
    pre = manifest["preprocess"]
    assert manifest["task"] == "forecast" and pre["head"] == head
    assert (pre["horizon"], pre["context"], pre["lags"], pre["past_length"], pre["season"]) == (14, 21, [1, 7], 28, 7)
    assert pre["quantiles"] == [0.025, 0.1, 0.5, 0.9, 0.975] and pre["series"] == (["c0", "c1", "c2"] if head ==
                                                                                     "negative_binomial" else ["s0", "s1", "s2"])
    if head == "student_t":  # the wide file has no timestamps: the position in the week
        assert pre["time_features"] == "phase" and pre["periods"] == [7] and pre["starts"] is None
    else:
        assert pre["time_features"] == "calendar" and pre["starts"]["c0" if head == "negative_binomial" else "s0"] \
            == "2020-01-01T00:00:00"
    graphs = manifest["graphs"]
    if head == "quantile":
        assert list(graphs) == ["model"] and [i["name"] for i in graphs["model"]["inputs"]] == ["past", "time", "series"]
        assert graphs["model"]["outputs"][0] == {"name": "quantiles", "shape": ["B", 14, 5], "dtype": "float32"}
    else:
        assert list(graphs) == ["encoder", "step"] and "mean path B=5 against Forecaster.forward" in checks
        assert [o["name"] for o in graphs["step"]["outputs"]][:len(pre["parameters"]) + 1] == [*pre["parameters"], "mean"]
        assert ("scale" in [i["name"] for i in graphs["step"]["inputs"]]) == (head == "negative_binomial")
    for graph in graphs.values():  # batch is the dynamic axis; past and horizon are the model's
        assert all(d == "B" or isinstance(d, int) for i in graph["inputs"] for d in i["shape"])


def test_a_forecasters_onnx_reads_time_as_a_scan(export_runs):
    """The context is read by an ONNX Scan, not a loop unrolled at export; the step graph is one step."""
    import onnx

    def ops(path):
        model = onnx.load(str(path))
        return {n.op_type for n in model.graph.node} | {n.op_type for f in model.functions for n in f.node}

    assert "Scan" in ops(export_runs.exported("forecast_quantile", "onnx").out / "model.onnx")
    out = export_runs.exported("forecast_student_t", "onnx").out
    assert "Scan" in ops(out / "encoder.onnx") and "Scan" not in ops(out / "step.onnx")


def test_the_cli_exports_a_forecaster(export_runs, tmp_path, capsys):
    out = tmp_path / "cli"
    capsys.readouterr()
    assert main(["export", str(export_runs.run("forecast_quantile")), "--format", "onnx", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "largest difference" in line and "quantiles B=" in line and "\n" not in line
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx"]
