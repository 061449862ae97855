import os

import pytest
import torch

from stackrnn import LSTM
from stackrnn.errors import InputError
from stackrnn.models.lm import LanguageModel
from stackrnn.run import RunDir, atomic_write_text


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    from stackrnn.run import atomic_write

    with pytest.raises(OSError):
        atomic_write(path, crash)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]  # no temporary left behind


def test_tied_model_round_trip(tmp_path):
    run = RunDir.create(tmp_path / "run")
    model = LanguageModel(20, [LSTM(8)], embedding_size=8, tie_weights=True)
    run.save_model(model, "model.safetensors")
    other = LanguageModel(20, [LSTM(8)], embedding_size=8, tie_weights=True)
    run.load_model(other, "model.safetensors")
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert other.decoder.weight is other.embedding.weight


def test_weights_of_another_model_are_refused(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.save_model(LanguageModel(20, [LSTM(8)], embedding_size=8), "model.safetensors")
    with pytest.raises(InputError, match="does not fit the model"):
        run.load_model(LanguageModel(20, [LSTM(9)], embedding_size=8), "model.safetensors")


def test_create_refuses_non_empty_and_open_refuses_missing(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(InputError, match="not a stackrnn run"):
        RunDir.create(tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(InputError, match="does not exist"):
        RunDir.open(tmp_path / "none")


def test_metrics_survive_a_cut_line(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.append_metrics({"step": 1})
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')  # a crash mid-line
    assert run.read_metrics() == [{"step": 1}]


def test_corrupt_trainer_json(tmp_path):
    run = RunDir.create(tmp_path / "run")
    (run / "trainer.json").write_text("{not json")
    with pytest.raises(InputError, match="corrupted"):
        run.load_json("trainer.json")


def test_check_new_says_what_is_in_the_way(tmp_path):
    (tmp_path / "file.txt").write_text("notes")
    with pytest.raises(InputError, match="is a file") as e:
        RunDir.check_new(tmp_path / "file.txt")
    assert "--resume" not in str(e.value)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="not a stackrnn run") as e:
        RunDir.check_new(tmp_path / "photos")
    assert "--resume" not in str(e.value) and "another --out" in str(e.value)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.toml").write_text("task = 'lm'\n")
    with pytest.raises(InputError, match="--resume"):
        RunDir.check_new(tmp_path / "run")
    RunDir.check_new(tmp_path / "empty")  # a new folder, or an empty one, is fine
    (tmp_path / "empty").mkdir()
    RunDir.check_new(tmp_path / "empty")


def test_the_lock_file_goes_with_the_lock(tmp_path, trained_run):
    assert not (trained_run / ".lock").exists()  # a finished run holds no trace of its training process
    run = RunDir.create(tmp_path / "run")
    with run.lock():
        assert (run / ".lock").exists()
        with pytest.raises(InputError, match="being trained by process"):
            with run.lock():
                pass
        assert (run / ".lock").exists()  # the refused one removed nothing
    assert not (run / ".lock").exists()
    (run / ".lock").write_text("process 1")  # left by a killed process: the kernel released its lock
    with run.lock():
        pass
    assert not (run / ".lock").exists()
