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


def _toy_parallel(path: Path, pairs: int = 240) -> Path:
    """A word-for-word toy language: English numbers -> French numbers, 2 to 5 words a sentence."""
    import random

    en = "one two three four five six seven eight nine ten".split()
    fr = "un deux trois quatre cinq six sept huit neuf dix".split()
    rng = random.Random(0)
    lines = []
    for _ in range(pairs):
        words = [rng.randrange(10) for _ in range(rng.randint(2, 5))]
        lines.append(" ".join(en[w] for w in words) + " .\t" + " ".join(fr[w] for w in words) + " .")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_peer_translate_smoke(tmp_path, capsys):
    """The translation peer runs end to end at toy sizes: stackrnn trains (a subprocess) and is scored greedy and
    with beam 5, then the hand-written model trains on the run's own split and vocabularies, and one table
    prints both."""
    data = _toy_parallel(tmp_path / "toy.txt")
    results = tmp_path / "results.json"
    _load("peer_translate").main(["--smoke", "--minutes", "0.05", "--threads", "1", "--data", str(data),
                                  "--out", str(tmp_path / "runs"), "--json", str(results)])
    out = capsys.readouterr().out
    assert "| hand-written torch.nn |" in out and "stackrnn greedy / peer greedy" in out
    import json

    got = json.loads(results.read_text())
    assert got["peer"]["steps"] > 0 and got["stackrnn"]["beam1"]["pairs"] == got["stackrnn"]["beam5"]["pairs"] > 0
    assert 0 <= got["peer"]["bleu"] <= 100


def test_peer_translate_model_is_the_same_function(one_thread):
    """Given stackrnn's weights (zero bridge, unscaled scores, no dropout), the hand-written model computes stackrnn's Seq2Seq
    logits exactly: the two differ in code, not in what they compute, so the benchmark compares training."""
    peer = _load("peer_translate")
    from stackrnn.config import from_options
    from stackrnn.models.seq2seq import Seq2Seq, Seq2SeqConfig

    torch.manual_seed(0)
    cfg = from_options(Seq2SeqConfig, embedding_size=16, encoder_hidden_size=8, encoder_num_layers=2,
                       decoder_hidden_size=8, decoder_num_layers=4, dropout=0.0, bridge="zero",
                       scaled_attention=False)
    ours = Seq2Seq.from_config(cfg, 50, 50)
    theirs = peer.PeerSeq2Seq(50, 50, 16, 8, 2, 4, 0.0)
    with torch.no_grad():
        theirs.source_embedding.weight.copy_(ours.source_embedding.weight)
        theirs.target_embedding.weight.copy_(ours.target_embedding.weight)
        theirs.encoder.load_state_dict(ours.encoder.to_torch().state_dict())
        theirs.decoder.load_state_dict(ours.decoder.to_torch().state_dict())
        for bridge in (theirs.init_h, theirs.init_c):
            bridge.weight.zero_()
            bridge.bias.zero_()
        theirs.key.weight.copy_(ours.attention.memory_map.weight)
        theirs.combine.weight.copy_(ours.combine.weight)
        theirs.output.load_state_dict(ours.output.state_dict())
    source = torch.randint(1, 50, (6, 3))
    lengths = torch.tensor([6, 3, 4])
    source[3:, 1] = 0
    source[4:, 2] = 0
    target_in = torch.randint(1, 50, (5, 3))
    torch.testing.assert_close(theirs(source, lengths, target_in), ours(source, lengths, target_in)[0],
                               rtol=1e-5, atol=1e-6)


def test_bench_translate_smoke(capsys, one_thread):
    assert _load("bench_translate").main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "no input feeding" in out and "x the hand-written model" in out
