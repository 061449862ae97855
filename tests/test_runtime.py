"""stackrnn.runtime: an exported ONNX folder run with onnxruntime and numpy alone, in a process that never imports
torch, gives the PyTorch run's results: greedy generation's text, the classifier's labels and probabilities, greedy
translations. Skips without the export extra."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import stackrnn

for module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(module)

ROOT = Path(__file__).resolve().parents[1]
PREFIXES = ["the time", "his "]
TEXTS = ["the movie was great", "dull plot", "great", "zzz words it never saw"]
SENTENCES = ["The red cat sees the dog.", "Dog.", "the cat sees a fish"]

SCRIPT = """
import json, sys
from stackrnn import runtime
lm, classifier, translator = (runtime.load(p) for p in sys.argv[1:4])
result = {
    "generated": lm.generate(%r, length=25, temperature=0),
    "sampled": [lm.generate("the ", length=20, temperature=0.8, top_k=5, top_p=0.9, seed=3) for _ in range(2)],
    "predicted": classifier.predict(%r),
    "translated": translator.translate_details(%r),
    "one": [lm.generate("the", length=3, temperature=0), classifier.predict("great")["label"], translator.translate("Dog.")],
    "torch": "torch" in sys.modules,
}
print(json.dumps(result))
""" % (PREFIXES, TEXTS, SENTENCES)


@pytest.fixture(scope="module")
def results(export_runs):
    folders = [str(export_runs.exported(name, "onnx").out) for name in ("mixed", "classify", "translate")]
    done = subprocess.run([sys.executable, "-c", SCRIPT, *folders], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_runtime_never_imports_torch(results):
    assert results["torch"] is False


def test_greedy_generation_is_the_pytorch_runs(results, export_runs):
    run = stackrnn.load(export_runs.run("mixed"))
    assert results["generated"] == run.generate(PREFIXES, length=25, temperature=0)
    assert results["one"][0] == run.generate("the", length=3, temperature=0)
    sampled = results["sampled"]
    assert sampled[0] == sampled[1] and sampled[0].startswith("the ") and len(sampled[0]) == 24  # seeded: repeatable


def test_predictions_are_the_pytorch_runs(results, export_runs):
    want = stackrnn.load(export_runs.run("classify")).predict(TEXTS)
    for got, expected in zip(results["predicted"], want, strict=True):
        assert got["text"] == expected["text"] and got["label"] == expected["label"]
        for label, p in expected["probabilities"].items():
            assert got["probabilities"][label] == pytest.approx(p, abs=1e-4)
    assert results["one"][1] == stackrnn.load(export_runs.run("classify")).predict("great")["label"]


def test_greedy_translations_are_the_pytorch_runs(results, export_runs):
    run = stackrnn.load(export_runs.run("translate"))
    with pytest.warns(UserWarning, match="read as <unk>"):  # "a" and "fish": the runtime lists them too
        want = run.translate_details(SENTENCES, beam=1)
    got = results["translated"]
    assert [g["translation"] for g in got] == [w["translation"] for w in want]
    assert [g["unknown"] for g in got] == [w["unknown"] for w in want]
    for g in got:  # a row per target word (and the <eos> step), a column per source word, each summing to 1
        assert len(g["attention"]) >= len(g["translation"].split())
        assert all(abs(sum(row) - 1) < 1e-4 for row in g["attention"])
    assert results["one"][2] == run.translate("Dog.", beam=1)


def test_bad_input_is_an_input_error(export_runs, tmp_path):
    from stackrnn import runtime

    with pytest.raises(stackrnn.InputError, match="export.json"):
        runtime.load(tmp_path)
    with pytest.raises(stackrnn.InputError, match="runs onnx ones"):
        runtime.load(export_runs.exported("classify", "torch-export").out)
    lm = runtime.load(export_runs.exported("mixed", "onnx").out)
    with pytest.raises(stackrnn.InputError, match="not in the model's vocabulary"):
        lm.generate("XYZ", length=3)
    with pytest.raises(stackrnn.InputError, match="empty"):
        runtime.load(export_runs.exported("classify", "onnx").out).predict(["  "])
