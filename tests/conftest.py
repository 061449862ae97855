"""Shared fixtures and checks: small real text, a tiny trained run made once per test session, one thread for
tiny models and two for the compiled kernels, bad input as one line, and a killed run resumed."""

import os
from pathlib import Path

import pytest

from stackrnn.cli import main
from stackrnn.data.corpora import embedded_text

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory):
    """The engine's compiled kernels (stackrnn/kernels.py) are built into a folder of this session's, never into
    the user's cache."""
    folder = tmp_path_factory.mktemp("kernels")
    before = os.environ.get("STACKRNN_KERNEL_CACHE")
    os.environ["STACKRNN_KERNEL_CACHE"] = str(folder)
    yield folder
    if before is None:
        del os.environ["STACKRNN_KERNEL_CACHE"]
    else:
        os.environ["STACKRNN_KERNEL_CACHE"] = before


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    """About 30,000 characters of real English prose (the Python reference text that ships with Python)."""
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(embedded_text()[:30_000], encoding="utf-8")
    return path


TINY = ["--hidden-size", "32", "--num-layers", "2", "--embedding-size", "16", "--batch-size", "8", "--num-steps", "16", "--lr", "0.03",
        "--no-progress", "--log-every", "10", "--seed", "3"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, text_file) -> Path:
    """A tiny 2-layer LSTM character model trained for one epoch (a few seconds)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--data", str(text_file), "--out", str(out), "--epochs", "1", "--test-fraction", "0.1", *TINY]) == 0
    return out


def stack_gradcheck(stack, x, lengths) -> bool:
    """torch.autograd.gradcheck of a float64 stack's outputs and final states with respect to the input and every
    parameter, its masks drawn from a freshly seeded generator at every call (so the function is deterministic)."""
    import torch

    names = [n for n, _ in stack.named_parameters()]

    def f(x, *params):
        out, state = torch.func.functional_call(stack, dict(zip(names, params)), (x,),
                                                {"lengths": lengths, "generator": torch.Generator().manual_seed(5)})
        return (out, *[t for s in state for t in (s if isinstance(s, tuple) else (s,))])

    params = tuple(p.detach().clone().requires_grad_(True) for p in stack.parameters())
    return torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


@pytest.fixture(scope="module")
def one_thread():
    """torch.set_num_threads(1) for the rest of the module, restored after: tiny models are fastest on one thread,
    and two threads contending on a shared machine are ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fails_in_one_line(capsys, argv, match):
    """`stackrnn ARGV` exits with status 2 and one line on stderr, no traceback, containing `match`; that line."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


class Killed(BaseException):
    """A kill between two checkpoints: no handler saves anything (what SIGKILL leaves in the run directory)."""


def resume_after_kill_in_step_13(task_class, flags, tmp_path, monkeypatch, rate: str) -> None:
    """`stackrnn FLAGS` killed in step 13 (the last checkpoint at step 10, with --save-every 5) and resumed ends
    as the same run without a stop: the same weights and metrics to the last digit (but time and the `rate` key,
    items per second), evaluated at steps 10, 20 and 30."""
    import json

    import torch

    from stackrnn.run import RunDir

    assert main([*flags, "--out", str(tmp_path / "whole")]) == 0
    step, calls = task_class.step, iter(range(1, 1000))

    def killed_in_step_13(self, *args):
        if next(calls) == 13:
            raise Killed
        return step(self, *args)

    monkeypatch.setattr(task_class, "step", killed_in_step_13)
    with pytest.raises(Killed):
        main([*flags, "--out", str(tmp_path / "killed")])
    monkeypatch.undo()
    assert json.loads((tmp_path / "killed" / "trainer.json").read_text())["step"] == 10
    assert main(["train", "--resume", str(tmp_path / "killed"), "--no-progress"]) == 0
    a, b = RunDir(tmp_path / "whole"), RunDir(tmp_path / "killed")
    for name in ("last.safetensors", "model.safetensors"):
        ta, tb = a.load_tensors(name), b.load_tensors(name)
        for k in ta:
            torch.testing.assert_close(ta[k], tb[k], atol=0, rtol=0, msg=f"{name} {k}")
    strip = lambda records: [{k: v for k, v in r.items() if k not in ("time", rate)} for r in records]  # noqa: E731
    assert strip(a.read_metrics()) == strip(b.read_metrics())
    assert [r["step"] for r in a.read_metrics() if r["split"] == "valid"] == [10, 20, 30]


@pytest.fixture
def two_threads():
    """torch.set_num_threads(2) for the test (the compiled kernels take their count from it), restored after; skips
    where the kernels were built without OpenMP (tests that ask for it check first that they were built)."""
    import torch

    from stackrnn import kernels

    if kernels.steps(torch.float32).set_threads(1) == 0:
        pytest.skip("the kernels were built without OpenMP here: one thread runs every row")
    limit = os.environ.get("OMP_THREAD_LIMIT", "")
    if os.environ.get("OMP_DYNAMIC", "").lower() in ("true", "1") or (limit.isdigit() and int(limit) < 2):
        pytest.skip("OMP_DYNAMIC or OMP_THREAD_LIMIT may give the kernels a team of one")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def export_runs(tmp_path_factory):
    """Tiny runs of every task and their exports, made on first use (tests/export_runs.py)."""
    from .export_runs import Runs

    return Runs(tmp_path_factory.mktemp("export-runs"))
