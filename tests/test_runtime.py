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


# -- forecasting -------------------------------------------------------------------------------------------------
from .export_runs import FORECASTS, forecast_values, one_thread  # noqa: E402

PATHS = 2000  # sample paths per series of a distribution head, on each side

FORECAST_SCRIPT = """
import json, sys
import numpy as np
from stackrnn import runtime
heads, folders, values = json.loads(sys.argv[1]), sys.argv[2:], json.loads(sys.stdin.read())
out = {}
for head, folder in zip(heads, folders):
    model = runtime.load(folder)
    ids = list(values[head])
    past = [values[head][i] for i in ids]
    every = model.forecast(past, ids, samples=%d)
    result = {"point": model.point(past, ids).tolist(), "timestamps": [f["timestamps"] for f in every],
              "median": [f["median"].tolist() for f in every],
              "quantiles": [[q.tolist() for q in f["quantiles"].values()] for f in every],
              "test": [f["median"].tolist() for f in model.forecast([p[:-14] for p in past], ids, samples=50)],
              "short": model.forecast(past[1], ids[1], horizon=5, samples=50)["median"].tolist(),
              "alone": model.forecast(past[1], ids[1], samples=50)["median"].tolist(),
              "among": model.forecast(past, ids, samples=50)[1]["median"].tolist()}
    if "paths" in every[0]:
        paths = np.stack([f["paths"] for f in every])  # (B, N, H)
        result.update(mean=paths.mean(1).tolist(), var=paths.var(1).tolist(),
                      spread=(np.quantile(paths, 0.9, axis=1) - np.quantile(paths, 0.1, axis=1)).tolist())
    out[head] = result
out["torch"] = "torch" in sys.modules
print(json.dumps(out))
""" % PATHS


@pytest.fixture(scope="module")
def forecasts(export_runs):
    heads = list(FORECASTS)
    folders = [str(export_runs.exported(f"forecast_{head}", "onnx").out) for head in heads]
    values = {head: {k: v.tolist() for k, v in forecast_values("counts" if head == "negative_binomial" else
                                                               "values").items()} for head in heads}
    done = subprocess.run([sys.executable, "-c", FORECAST_SCRIPT, json.dumps(heads), *folders], input=json.dumps(values),
                          capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _torch_forecaster(export_runs, head):
    """The PyTorch run, and its inputs for the forecast after the end of every series (as ForecasterRun.forecast
    builds them)."""
    import numpy as np

    run = stackrnn.load(export_runs.run(f"forecast_{head}"))
    task = run.task
    task._loaded()
    padded = [np.concatenate([v, np.full(task.shape.horizon, np.nan)]) for v in task.full]
    window = task.window(list(range(len(padded))), [len(v) for v in task.full], padded, actual=False)
    return run, window.tensors("cpu")


def _scales(head):
    """(B, 1) each series' scale as the model takes it: the mean absolute value of its last 21 (the context)."""
    import numpy as np

    values = forecast_values("counts" if head == "negative_binomial" else "values")
    return np.array([[np.abs(v[-21:]).mean()] for v in values.values()])


def _close(got, want, scale) -> None:
    """Equal within 1e-4 in units of each series' scale (B, 1), as the export's parity check measures: float32
    carries about 1e-7 of a value, so series of level 150 differ by up to 1e-5 in their own units."""
    import numpy as np

    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    worst = np.abs((got - want) / scale.reshape(-1, *[1] * (want.ndim - 1))).max()
    assert worst <= 1e-4, worst


def test_the_forecasting_runtime_never_imports_torch(forecasts):
    assert forecasts["torch"] is False


@pytest.mark.parametrize("head", list(FORECASTS))
def test_the_runtimes_deterministic_forecast_is_pytorchs(forecasts, export_runs, head):
    """point(): the quantile head's median, or the path fed each step's mean, equal to Forecaster.forward's within
    1e-4 in units of each series' scale (levels 5 to 150), with the time features built without torch
    (calendar features, or the position in the week for the wide file's series)."""
    import torch

    run, (past, time, rows) = _torch_forecaster(export_runs, head)
    with torch.no_grad(), one_thread():
        want = run.model(past, time, rows)
    _close(forecasts[head]["point"], want.numpy(), _scales(head))


def test_the_runtimes_quantiles_are_pytorchs(forecasts, export_runs):
    import numpy as np

    run = stackrnn.load(export_runs.run("forecast_quantile"))
    got = forecasts["quantile"]
    with one_thread():
        want, test = run.forecast(), run.forecast(split="test")
    scales = _scales("quantile")
    _close(got["median"], [w["median"] for w in want], scales)
    _close(got["quantiles"], [list(w["quantiles"].values()) for w in want], scales)
    for stamps, w in zip(got["timestamps"], want):
        assert stamps == w["timestamps"] and stamps[0] == "2020-04-10"  # the day after the 100th
    # the past without its last 14 values: the test split's forecast (scaled by the values it reads)
    _close(got["test"], [w["median"] for w in test], np.array([[np.abs(v[-35:-14]).mean()] for v in
                                                               forecast_values("values").values()]))
    _close([got["short"]], [want[1]["median"][:5]], scales[1:2])  # a shorter horizon


@pytest.mark.parametrize("head", [h for h in FORECASTS if h != "quantile"])
def test_the_runtimes_sampled_paths_follow_pytorchs_distributions(forecasts, export_runs, head):
    """numpy draws other paths than torch from the same distributions: each step's mean over 2,000 paths agrees
    with PyTorch's over 2,000 within 4.5 standard errors of their difference (both sides' sample variances; 42
    steps of 3 series, so a wrong distribution would be far out while chance stays under 4.5 with probability
    above 0.9997), the average |z| is near sqrt(2/pi) = 0.8, and the 80% interval's width agrees within 15% on
    average. A series' paths are the same alone and among others (its own generator), to float32's rounding."""
    import numpy as np
    import torch

    run, (past, time, rows) = _torch_forecaster(export_runs, head)
    with one_thread():
        paths = run.model.forecast(past, time, rows, samples=PATHS)["paths"].double().numpy()  # (B, N, H)
    got = forecasts[head]
    z = (np.array(got["mean"]) - paths.mean(1)) / np.sqrt((np.array(got["var"]) + paths.var(1)) / PATHS)
    assert np.abs(z).max() < 4.5 and np.abs(z).mean() < 1.2, z
    ratio = np.array(got["spread"]) / (np.quantile(paths, 0.9, axis=1) - np.quantile(paths, 0.1, axis=1))
    assert abs(ratio.mean() - 1) < 0.15, ratio
    np.testing.assert_allclose(got["alone"], got["among"], rtol=1e-4, atol=1e-4)  # (onnxruntime's sums in another
    # order at another batch size: equal to float32's rounding)
    assert torch.isfinite(torch.tensor(got["median"])).all()


def test_bad_forecasting_input_is_an_input_error(export_runs):
    from stackrnn import runtime

    model = runtime.load(export_runs.exported("forecast_quantile", "onnx").out)
    past = forecast_values("values")["s0"]
    with pytest.raises(stackrnn.InputError, match="not one the model was trained on"):
        model.forecast(past, "nope")
    with pytest.raises(stackrnn.InputError, match="at least 28 past values"):
        model.forecast(past[:20], "s0")
    with pytest.raises(stackrnn.InputError, match="give 1 to 14"):
        model.forecast(past, "s0", horizon=15)
    with pytest.raises(stackrnn.InputError, match="one id per past series"):
        model.forecast([past, past], ["s0"])
    # a series starting elsewhere: its own first timestamp moves the calendar
    moved = model.forecast(past, "s0", start="2021-06-01")
    assert moved["timestamps"][0] == "2021-09-09"
