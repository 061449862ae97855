import json

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


def _grad_run(folder, layers: int, scale: float):
    """A run folder whose metrics hold training and gradient records (train.grad_every), as train writes them."""
    folder.mkdir(parents=True)
    records = [{"step": 5, "epoch": 1, "split": "train", "loss": 2.0}]
    for step in (5, 10, 15):
        steps = [[scale * (layer + 1) * (t + 1) / step for t in range(8)] for layer in range(layers)]
        records.append({"step": step, "epoch": 1, "split": "grad", "layer_grad_norm": [sum(v * v for v in s) ** 0.5 for s in steps],
                        "step_grad_norm": steps, "time": step / 10})
    records[-1]["step_grad_norm"][0][3] = None  # a non-finite value, logged as null
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_plot_gradient_figures(tmp_path):
    from stackrnn.plot import plot_runs

    runs = [_grad_run(tmp_path / "deep", 4, 1.0), _grad_run(tmp_path / "shallow", 2, 0.01)]
    written = plot_runs(runs, tmp_path / "plots")
    assert {p.name for p in written} == {"loss.png", "grad_layers.png", "grad_steps.png"}
    for name in ("grad_layers.png", "grad_steps.png"):
        image = plt.imread(str(tmp_path / "plots" / name))
        assert image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 0.01
