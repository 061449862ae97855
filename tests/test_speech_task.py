"""Speech recognition end to end (tasks/speech.py, SpeechRun, `stackrnn transcribe` and `stackrnn eval`): a tiny
run on a manifest of synthetic feature files learns to transcribe; transcripts are the same alone and together;
eval gives WER and CER with best path and beam search; resume after a kill; bad input (corrupt, empty or
implausible WAVs, a .mfc with a wrong count, transcripts outside the token set, missing files) is one line with
exit status 2 and nothing written. Tiny runs, one thread, seconds each; FSDD and AN4 where ../shared/data
holds them."""

import json
import struct
import wave
from dataclasses import asdict

import numpy as np
import pytest
import torch

import stackrnn
from stackrnn.cli import main

from .conftest import SHARED, fails_in_one_line as _fails, resume_after_kill_in_step_13
from .test_speech import render

TINY = ["--task", "speech", "--hidden-size", "16", "--num-layers", "2", "--batch-size", "16", "--lr", "0.02",
        "--no-progress", "--seed", "0", "--threads", "1"]
LETTERS = "abc"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: fastest on one thread


def write_set(folder, name: str, n: int, seed: int, *, rows: list[str] | None = None):
    """n synthetic utterances as .npy feature files under folder/name/, and folder/name.csv listing them."""
    rng = np.random.default_rng(seed)
    (folder / name).mkdir(parents=True, exist_ok=True)
    lines = ["path,transcript"]
    for i in range(n):
        tokens = rng.integers(1, 4, rng.integers(1, 5)).tolist()
        np.save(folder / name / f"{i}.npy", render(tokens, rng))
        lines.append(f"{name}/{i}.npy,{''.join(LETTERS[k - 1] for k in tokens)}")
    manifest = folder / f"{name}.csv"
    manifest.write_text("\n".join(lines + (rows or [])) + "\n")
    return manifest


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    return {s: write_set(folder, s, n, seed) for s, n, seed in (("train", 160, 1), ("valid", 40, 2), ("test", 40, 3))}


def data_flags(data):
    return ["--data", str(data["train"]), "--valid-data", str(data["valid"]), "--test-data", str(data["test"])]


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("runs") / "speech"
    # global statistics: per-utterance ones would blow the noise of a channel no symbol lights up to unit size
    assert main(["train", *data_flags(data), "--out", str(out), "--epochs", "14", "--normalize", "global", *TINY,
                 "--lr", "0.01"]) == 0
    return out


def test_train_transcribe_and_eval_have_help(capsys):
    for argv in (["train", "--task", "speech", "--help"], ["transcribe", "--help"], ["eval", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--pyramid" in out and "--time-masks" in out and "--beam" in out and "best path" in out


def test_a_tiny_run_transcribes_its_test_set(speech_run, capsys):
    assert main(["eval", str(speech_run), "--split", "test", "--json"]) == 0
    greedy = json.loads(capsys.readouterr().out)
    assert greedy["utterances"] == 40 and greedy["accuracy"] >= 0.9 and greedy["cer"] <= 0.05, greedy
    assert main(["eval", str(speech_run), "--split", "test", "--beam", "4", "--json"]) == 0
    beam = json.loads(capsys.readouterr().out)
    assert beam["beam"] == 4 and beam["wer"] <= greedy["wer"] + 0.05
    assert main(["eval", str(speech_run), "--split", "test", "--examples", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("test: 40 utterances, beam 1: WER") and text.count("reference:") == 2


def test_a_file_is_transcribed_the_same_alone_and_among_others(speech_run, data):
    run = stackrnn.load(speech_run)
    files = sorted(str(p) for p in (data["test"].parent / "test").glob("*.npy"))[:12]
    together = run.transcribe(files)
    for f, t in zip(files, together):
        alone = run.transcribe(f)
        assert alone["transcript"] == t["transcript"] and alone["tokens"] == t["tokens"]
    assert run.transcribe(files, beam=1) == together


def test_transcribe_prints_a_line_per_file_and_json_with_times(speech_run, data, capsys):
    rows = data["test"].read_text().splitlines()[1:4]
    files = [str(data["test"].parent / r.split(",")[0]) for r in rows]
    assert main(["transcribe", str(speech_run), *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [r.split(",")[1] for r in rows]  # the run reads these right
    assert main(["transcribe", str(speech_run), files[0], "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["transcript"] == lines[0] and [t["token"] for t in result["tokens"]] == list(lines[0])
    times = [t["time"] for t in result["tokens"]]
    assert times == sorted(times) and all(0 < t["probability"] <= 1 for t in result["tokens"])


# -- resume ---------------------------------------------------------------------------------------------------
def test_a_run_killed_between_checkpoints_resumes_to_the_uninterrupted_run(tmp_path, data, monkeypatch):
    """Killed in step 13 (mid-epoch, dropout and SpecAugment on, the last checkpoint at step 10) and resumed ==
    run to the end without a stop: the same weights and metrics, to the last digit."""
    from stackrnn.tasks.speech import SpeechTask

    flags = ["train", *data_flags(data), *TINY, "--dropout", "0.2", "--epochs", "3", "--save-every", "5",
             "--log-every", "5", "--time-masks", "1", "--time-width", "3", "--freq-masks", "1", "--freq-width", "2"]
    resume_after_kill_in_step_13(SpeechTask, flags, tmp_path, monkeypatch, rate="utterances_per_s")


# -- bad input ------------------------------------------------------------------------------------------------
def _wav(path, frames: bytes, rate: int = 8000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def test_bad_files_to_transcribe_are_one_line(speech_run, tmp_path, capsys):
    run = str(speech_run)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00junk" * 10)
    assert str(corrupt) in _fails(capsys, ["transcribe", run, str(corrupt)], "not a PCM WAV file")
    empty = _wav(tmp_path / "empty.wav", b"")
    assert str(empty) in _fails(capsys, ["transcribe", run, str(empty)], "holds no audio")
    slow = _wav(tmp_path / "slow.wav", b"\x00\x01" * 400, rate=100)
    _fails(capsys, ["transcribe", run, str(slow)], "sample rate 100 Hz is not a recording's")
    mfc = tmp_path / "short.mfc"
    mfc.write_bytes(struct.pack(">i", 26) + np.zeros(13, ">f4").tobytes())
    assert str(mfc) in _fails(capsys, ["transcribe", run, str(mfc)], "the header counts 26 values but the file holds 13")
    wrong = tmp_path / "wide.npy"
    np.save(wrong, np.zeros((20, 9), np.float32))
    _fails(capsys, ["transcribe", run, str(wrong)], "9 features per frame, but the run reads 6")
    _fails(capsys, ["transcribe", run, str(tmp_path / "nowhere.wav")], "nowhere.wav: no such file")
    _fails(capsys, ["transcribe", run, str(wrong), "--beam", "0"], "--beam: expected an integer >= 1, got 0")
    _fails(capsys, ["eval", run, "--beam", "0"], "beam")
    _fails(capsys, ["eval", run, "--length-penalty", "1"], "--length-penalty: for translation runs")


def test_runs_of_other_tasks_are_refused(speech_run, trained_run, capsys):
    _fails(capsys, ["transcribe", str(trained_run), "a.wav"], "is a language-model run, not a speech recognition run")
    _fails(capsys, ["predict", str(speech_run), "some text"], "is a speech recognition run, not a classification run")


def test_a_transcript_outside_the_token_set_is_one_line_and_writes_nothing(tmp_path, data, capsys):
    valid = data["valid"].parent / "odd.csv"
    valid.write_text(data["valid"].read_text().replace("\n", "\nvalid/0.npy,abz\n", 1))
    line = _fails(capsys, ["train", "--data", str(data["train"]), "--valid-data", str(valid), "--out",
                           str(tmp_path / "run"), *TINY], "transcript 'abz' has 'z', which is not among the run's symbols")
    assert f"{valid}, line 2" in line
    assert not (tmp_path / "run").exists()


def test_a_missing_file_in_a_short_manifest_stops_and_in_a_long_one_is_skipped_with_a_count(tmp_path, data, capsys):
    short = data["train"].parent / "short.csv"
    short.write_text("path,transcript\ntrain/0.npy,a\ntrain/gone.npy,b\n")
    line = _fails(capsys, ["train", "--data", str(short), "--out", str(tmp_path / "run"), *TINY], "does not exist")
    assert f"{short}, line 3" in line and "gone.npy" in line
    assert not (tmp_path / "run").exists()
    long = write_set(data["train"].parent, "long", 160, 1, rows=["long/gone1.npy,ab", "long/gone2.npy,c"])
    capsys.readouterr()
    assert main(["train", "--data", str(long), "--valid-data", str(data["valid"]), "--out", str(tmp_path / "run"),
                 "--max-steps", "1", *TINY]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "skipped" in ln]
    assert len(warned) == 1 and "skipped 2 bad rows of 162" in warned[0] and "line 162" in warned[0], warned


# -- the shared data ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (SHARED / "fsdd").is_dir(), reason="../shared/data/fsdd is absent")
def test_fsdd_splits_by_index_or_by_speaker():
    from stackrnn.data.speech import fsdd_split, read_fsdd

    utterances = read_fsdd(SHARED / "fsdd")
    assert len(utterances) == 2500 and {u.text for u in utterances} == set("0123456789")
    train, test = fsdd_split(utterances, [])
    assert (len(train), len(test)) == (2250, 250) and all(int(u.where) <= 4 for u in test)
    train, test = fsdd_split(utterances, ["theo"])
    assert (len(train), len(test)) == (2000, 500) and {u.speaker for u in test} == {"theo"}
    with pytest.raises(ValueError, match="'nobody' is not among the recordings' speakers"):
        fsdd_split(utterances, ["nobody"])


@pytest.mark.skipif(not (SHARED / "an4_mfcc").is_dir(), reason="../shared/data/an4_mfcc is absent")
def test_an4_reads_948_training_and_130_test_utterances():
    from stackrnn.data.speech import read_an4

    train, test = read_an4(SHARED / "an4_mfcc", "train"), read_an4(SHARED / "an4_mfcc", "test")
    assert (len(train), len(test)) == (948, 130)
    assert test[0].text == "RUBOUT G M E F THREE NINE" and test[0].path.endswith("an406-fcaw-b.mfc")


# -- streaming and global normalisation -----------------------------------------------------------------------
def test_a_unidirectional_run_streams_the_same_transcripts_as_whole_files(tmp_path, data, capsys):
    """With global statistics (saved in the run: 6 means and deviations) and left-to-right layers, transcribe
    --stream gives exactly the whole files' transcripts and token times; runs that cannot stream say why."""
    out = tmp_path / "uni"
    assert main(["train", *data_flags(data), "--out", str(out), "--epochs", "4", "--no-bidirectional", "--normalize",
                 "global", "--frontend", "stack", "--stack-frames", "2", "--pyramid", "2", *TINY]) == 0
    saved = json.loads((out / "speech.json").read_text())
    assert len(saved["mean"]) == len(saved["std"]) == 6
    files = sorted(str(p) for p in (data["test"].parent / "test").glob("*.npy"))[:10]
    run = stackrnn.load(out)
    whole = run.transcribe(files)
    assert sum(len(r["tokens"]) for r in whole) >= 10  # the run writes something: the comparison means something
    for chunk in (40, 80, 1000):
        assert run.transcribe(files, stream=chunk) == whole
    capsys.readouterr()
    assert main(["transcribe", str(out), *files, "--stream", "--chunk-ms", "40"]) == 0
    assert capsys.readouterr().out.splitlines() == [r["transcript"] for r in whole]
    uni_per_utterance = tmp_path / "uni-utt"
    assert main(["train", *data_flags(data), "--out", str(uni_per_utterance), "--max-steps", "1", "--no-bidirectional",
                 *TINY]) == 0
    _fails(capsys, ["transcribe", str(uni_per_utterance), files[0], "--stream"], "--normalize global")
    _fails(capsys, ["transcribe", str(out), files[0], "--stream", "--chunk-ms", "0"], "chunk length")


def test_a_bidirectional_run_refuses_to_stream(speech_run, data, capsys):
    f = str(next((data["test"].parent / "test").glob("*.npy")))
    _fails(capsys, ["transcribe", str(speech_run), f, "--stream"], "--stream: this run's stack is bidirectional")


# -- connected digits -----------------------------------------------------------------------------------------
def test_connected_digit_strings_are_drawn_from_the_seed_within_one_speaker():
    from stackrnn.data.speech import Utterance, connect_digits

    takes = [Utterance(f"{d}_{s}_{i}.wav", str(d), str(i), s) for s in ("ann", "bob") for d in range(10) for i in range(3)]
    strings = connect_digits(takes, 30, seed=7)
    assert [asdict(u) for u in strings] == [asdict(u) for u in connect_digits(takes, 30, seed=7)]
    assert [u.text for u in strings] != [u.text for u in connect_digits(takes, 30, seed=8)]
    for u in strings:
        assert 2 <= len(u.parts) <= 7 and len({p for p, _ in u.parts}) == len(u.parts)  # different takes
        assert {p.split("_")[1] for p, _ in u.parts} == {u.speaker}
        assert u.text == "".join(p[0] for p, _ in u.parts)
        assert all(50 <= gap <= 300 for _, gap in u.parts) and 50 <= u.tail <= 300


@pytest.mark.skipif(not (SHARED / "fsdd").is_dir(), reason="../shared/data/fsdd is absent")
def test_a_connected_digit_run_saves_its_strings_and_eval_reads_them(tmp_path, capsys):
    out = tmp_path / "connected"
    assert main(["train", "--data", str(SHARED / "fsdd"), "--out", str(out), "--connected", "10", "--test-speakers",
                 "theo", "--sample-rate", "8000", "--max-steps", "1", *TINY]) == 0
    saved = json.loads((out / "speech.json").read_text())["connected"]
    assert [len(saved[s]) for s in ("train", "valid", "test")] == [10, 2, 2]
    assert {u["speaker"] for u in saved["test"]} == {"theo"} and "theo" not in {u["speaker"] for u in saved["train"]}
    saved["test"] = saved["test"][:1]  # eval scores what the run saved, not strings drawn again
    raw = json.loads((out / "speech.json").read_text())
    (out / "speech.json").write_text(json.dumps({**raw, "connected": saved}))
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["utterances"] == 1 and result["examples"][0]["reference"] == saved["test"][0]["text"]


def test_connected_strings_are_for_fsdd_and_test_speakers_too(tmp_path, data, capsys):
    _fails(capsys, ["train", *data_flags(data), "--out", str(tmp_path / "run"), "--connected", "5", *TINY],
           "data.connected: makes connected-digit strings of Free Spoken Digit Dataset takes; this data is manifest")
    _fails(capsys, ["train", "--data", str(data["train"]), "--out", str(tmp_path / "run"), "--test-speakers", "theo",
                    *TINY], "data.test_speakers: splits the Free Spoken Digit Dataset by speaker")
    assert not (tmp_path / "run").exists()


# -- inspect --------------------------------------------------------------------------------------------------
@pytest.mark.skipif(__import__("importlib").util.find_spec("matplotlib") is None, reason="matplotlib is absent")
def test_inspect_draws_every_layer_over_the_frames_of_a_file(speech_run, data, tmp_path, capsys):
    f = str(next((data["test"].parent / "test").glob("*.npy")))
    run = stackrnn.load(speech_run)
    layers, log_probs, seconds = run.task.layer_outputs(run.model, f)
    frames = len(np.load(f))
    assert [tuple(x.shape) for x in layers] == [(frames, 32), (frames, 32)] and log_probs.shape == (frames, 4)
    assert seconds == [0.01, 0.01, 0.01]
    assert main(["inspect", str(speech_run), "--audio", f, "--out", str(tmp_path / "look")]) == 0
    assert (tmp_path / "look" / "layers.png").stat().st_size > 10_000
    _fails(capsys, ["inspect", str(speech_run), "--audio", f, "--out", str(tmp_path / "look")], "is not empty")
    _fails(capsys, ["inspect", str(speech_run), "--audio", f, "--text", "hi", "--out", str(tmp_path / "l2")],
           "leave out --text")


def test_a_batch_is_shared_between_processes_and_a_short_one_still_gives_each_a_step():
    from types import SimpleNamespace

    from stackrnn.tasks.speech import SpeechBatches, SpeechTask

    feats = [torch.randn(n, 3) for n in (5, 4, 3)]
    (batch,) = SpeechBatches(feats, [[1], [2, 1], [3]], 3, shuffle=False)
    parts = [SpeechTask.shard(None, batch, SimpleNamespace(rank=r, size=2)) for r in range(2)]
    assert sorted(i for p in parts for i in p.index.tolist()) == [0, 1, 2]
    lonely = SpeechTask.shard(None, batch, SimpleNamespace(rank=3, size=4))
    assert lonely.index.numel() == 0 and lonely.x.shape[1] == 1  # one utterance to step on, counted as none
