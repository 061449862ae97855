"""stackrnn sweep: a grid of tiny runs, its table and plots, and bad grids refused before any run starts."""

import json

import pytest

from stackrnn.cli import main

TINY = ["--set", "model.hidden_size=16", "--set", "model.embedding_size=8", "--set", "data.num_steps=16",
        "--set", "data.batch_size=8", "--set", "train.epochs=1", "--set", "train.max_steps=20"]


def test_a_grid_trains_every_combination_and_writes_its_table_and_plots(text_file, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--grid", "model.num_layers=1,2", "--grid", "model.cell=lstm,gru",
                 "--set", f"data.data={text_file}", *TINY, "--out", str(out)]) == 0
    table = json.loads((out / "sweep.json").read_text())
    assert [(r["model.num_layers"], r["model.cell"]) for r in table["runs"]] == [(1, "lstm"), (1, "gru"), (2, "lstm"), (2, "gru")]
    assert all(r["steps"] == 20 and r["best_valid_perplexity"] > 1 for r in table["runs"])
    assert table["figure"] == "perplexity" and table["lower_is_better"]
    params = {(r["model.num_layers"], r["model.cell"]): r["parameters"] for r in table["runs"]}
    assert params[(2, "lstm")] > params[(1, "lstm")] > params[(1, "gru")]
    for r in table["runs"]:
        assert (out / r["run"] / "model.safetensors").is_file()  # each an ordinary run directory
    for png in ("metric_by_num_layers.png", "metric_by_time.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "| model.num_layers | model.cell |" in printed and (out / "sweep.md").read_text() in printed


@pytest.mark.parametrize("argv,expected", [
    (["--grid", "model.num_layers"], "SECTION.KEY=VALUE"),
    (["--grid", "model.depth=1,2"], "no key 'depth'"),
    (["--grid", "optimizer.lr=1,2"], "unknown section"),
    (["--grid", "model.num_layers=1,x"], "--num-layers"),
    (["--grid", "model.num_layers=1,1"], "repeated"),
    (["--grid", "model.num_layers=1,2", "--set", "model.num_layers=3"], "given twice"),
    (["--grid", "model.num_layers=1,0"], "model.num_layers: expected an integer >= 1, got 0"),
    (["--grid", "model.num_layers=1,2", "--budget-minutes", "0"], "--budget-minutes"),
    ([], "--grid"),
    (["--grid", "data.batch_size=8,100000"], "batch_size=100000"),  # found by reading the data, before any run
    (["--grid", "train.max_minutes=1,2", "--budget-minutes", "1"], "--budget-minutes"),
])
def test_bad_grids_are_one_line_and_no_run_starts(text_file, tmp_path, capsys, argv, expected):
    out = tmp_path / "sweep"
    assert main(["sweep", *argv, "--set", f"data.data={text_file}", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()


def test_an_existing_sweep_folder_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text("{}")
    assert main(["sweep", "--grid", "model.num_layers=1,2", "--out", str(out)]) == 2
    assert (out / "sweep.json").read_text() == "{}"


def test_ctrl_c_ends_the_sweep_not_just_its_run(text_file, tmp_path, monkeypatch):
    import stackrnn.train

    real = stackrnn.train.train

    def interrupted(cfg, out, **kwargs):  # as if Ctrl-C came during the first run
        result = real(cfg, out, **kwargs)
        result.stopped = "interrupted"
        return result

    monkeypatch.setattr(stackrnn.train, "train", interrupted)
    out = tmp_path / "sweep"
    assert main(["sweep", "--grid", "model.num_layers=1,2", "--set", f"data.data={text_file}", *TINY, "--out", str(out)]) == 0
    table = json.loads((out / "sweep.json").read_text())
    assert [r["stopped"] for r in table["runs"]] == ["interrupted"] and not (out / "runs" / "num_layers=2").exists()
    assert "| interrupted |" in (out / "sweep.md").read_text()
