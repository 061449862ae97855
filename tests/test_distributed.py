"""Data-parallel training: 2 CPU processes (torchrun, gloo, DistributedDataParallel) follow the same loss
curve as 1 process with the same global batch, for a language model (state carried per stream) and for a
classifier and a translator (uneven last batches); and a 2-process run resumes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stackrnn.run import RunDir

from .conftest import TINY
from .test_classify_task import TINY as CLASSIFY, _rule_data, _write_tsv

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _train(*argv):
    result = subprocess.run([sys.executable, "-m", "stackrnn.cli", "train", *argv], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _curve(run: Path, split: str) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["split"] == split and r.get("loss") is not None]


def _same_curves(a: Path, b: Path) -> None:
    for split in ("train", "valid"):
        one, two = _curve(a, split), _curve(b, split)
        assert [s for s, _ in one] == [s for s, _ in two] and one, (split, one, two)
        for (_, x), (_, y) in zip(one, two):
            assert abs(x - y) <= 1e-5 * abs(x), (split, one, two)
    wa, wb = RunDir(a).load_tensors("last.safetensors"), RunDir(b).load_tensors("last.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4, msg=k)


def test_language_model_two_processes_equal_one(tmp_path, text_file):
    # SGD: its step is linear in the gradient, so the two runs' weights differ by the rounding of the gradients'
    # sums (DDP's average of two half batches against one mean). Adam divides each gradient by its running size,
    # which for a near-zero gradient turns that rounding into a visible share of the step (3e-5 in 12 steps, seen
    # on an AMD build machine), so it is no test of the data-parallel sums
    flags = ["--data", str(text_file), *TINY, "--optimizer", "sgd", "--lr", "1.0", "--max-steps", "12", "--log-every",
             "2", "--eval-every", "6"]
    _train(*flags, "--out", str(tmp_path / "one"))
    out = _train(*flags, "--out", str(tmp_path / "two"), "--nproc", "2")
    assert "2 processes" in out.stderr and out.stdout.count("run directory:") == 1  # rank 0 speaks for all
    _same_curves(tmp_path / "one", tmp_path / "two")


def test_classifier_two_processes_equal_one_with_an_uneven_last_batch(tmp_path):
    train = _write_tsv(tmp_path / "train.tsv", _rule_data(401, 0))  # batches of 16: the last holds 1 text
    valid = _write_tsv(tmp_path / "valid.tsv", _rule_data(40, 1))
    flags = ["--data", str(train), "--valid-data", str(valid), *CLASSIFY, "--epochs", "1", "--log-every", "5"]
    _train(*flags, "--out", str(tmp_path / "one"))
    _train(*flags, "--out", str(tmp_path / "two"), "--nproc", "2")
    _same_curves(tmp_path / "one", tmp_path / "two")


def test_a_two_process_run_resumes(tmp_path, text_file):
    flags = ["--data", str(text_file), *TINY, "--log-every", "2", "--eval-every", "4", "--epochs", "2"]
    _train(*flags, "--out", str(tmp_path / "whole"), "--nproc", "2", "--max-steps", "12")
    _train(*flags, "--out", str(tmp_path / "split"), "--nproc", "2", "--max-steps", "8")  # mid-epoch, at an evaluation
    _train("--resume", str(tmp_path / "split"), "--nproc", "2", "--max-steps", "12", "--no-progress")
    _same_curves(tmp_path / "whole", tmp_path / "split")


@pytest.mark.parametrize("flags, match", [
    (["--nproc", "2"], "--out"),
    (["--nproc", "3", "--out", "RUN"], "multiple of 3"),
    (["--nproc", "0", "--out", "RUN"], "--nproc"),
])
def test_bad_nproc_is_one_line_before_any_process_starts(tmp_path, text_file, capsys, flags, match):
    from stackrnn.cli import main

    flags = [str(tmp_path / "run") if f == "RUN" else f for f in flags]
    assert main(["train", "--data", str(text_file), *TINY, *flags]) == 2  # TINY's batch is 8
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "run").exists()


def test_translator_two_processes_equal_one_with_an_uneven_last_batch(tmp_path):
    from stackrnn.data.parallel import read_parallel, split_indices

    from .test_translate import TINY as TRANSLATE, _pairs

    data = tmp_path / "pairs.txt"
    data.write_text("\n".join(_pairs(500, 4)) + "\n", encoding="utf-8")
    n_train = len(split_indices(read_parallel(data), 0.1, 0.1)["train"])
    batch = next(b for b in range(16, 64) if n_train % b == 1)  # the last batch holds one pair: one process idles
    flags = ["--data", str(data), *TRANSLATE, "--batch-size", str(batch), "--epochs", "1", "--log-every", "3"]
    _train(*flags, "--out", str(tmp_path / "one"))
    _train(*flags, "--out", str(tmp_path / "two"), "--nproc", "2")
    _same_curves(tmp_path / "one", tmp_path / "two")
