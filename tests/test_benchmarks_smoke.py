"""The benchmarks' code paths, run at toy sizes so they cannot rot; no test times anything (benchmarks/ does)."""

import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the smoke run's few tiny kernels: a second thread only waits for the first
    yield
    torch.set_num_threads(before)


def test_bench_forecast_smoke(capsys, one_thread):
    """Both heads' hand-written torch.nn peers give the forecaster's loss and gradients (bench_train checks it
    before timing), and the batched and one-path-a-call sampling run."""
    assert _load("bench_forecast").main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "train windows/s, student_t" in out and "train windows/s, quantile" in out
    assert "forecast 8 series x 3 paths" in out and "speed-up" in out


def test_peer_deepar_without_gluonts(capsys):
    """peer_deepar.py needs GluonTS, which lives in its own environment (benchmarks/setup_peer.sh): here it
    imports, and says in one line how to get that environment."""
    if importlib.util.find_spec("gluonts") is not None:
        pytest.skip("GluonTS is installed here: run benchmarks/peer_deepar.py itself")
    with pytest.raises(SystemExit) as stop:
        _load("peer_deepar").main(["--minutes", "0.1"])
    assert stop.value.code == 2 and "benchmarks/setup_peer.sh" in capsys.readouterr().err
