import pytest

from stackrnn.cli import main

from .conftest import TINY

plt = pytest.importorskip("matplotlib.pyplot", reason="matplotlib (the plot extra) is not installed")


def test_plot_compares_runs(tmp_path, trained_run, text_file, capsys):
    other = tmp_path / "other" / "tiny"  # the same folder name as trained_run: told apart by its parent
    assert main(["train", *TINY, "--data", str(text_file), "--out", str(other), "--max-steps", "20", "--eval-every", "10"]) == 0
    capsys.readouterr()
    assert main(["plot", str(trained_run), str(other), "--out", str(tmp_path / "plots")]) == 0
    written = capsys.readouterr().out.split()
    assert {p.rsplit("/", 1)[-1] for p in written} == {"loss.png", "perplexity.png", "lr.png", "grad_norm.png"}
    image = plt.imread(str(tmp_path / "plots" / "perplexity.png"))
    assert image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 0.01  # a real picture, not blank


def test_plot_bad_input(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nothing"), "--out", str(tmp_path / "p")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    assert main(["plot", str(tmp_path / "empty"), "--out", str(tmp_path / "p")]) == 2
    assert "holds no metrics" in capsys.readouterr().err
