"""Shared fixtures: small real text, a tiny trained run made once per test session, and two threads for the
compiled kernels."""

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
