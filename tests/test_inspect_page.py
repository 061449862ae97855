"""The activation page (stackrnn.inspect.page): units ranked by their correlation with text features, gate
saturation, the files written (one self-contained HTML page, PNG heat maps, summary.json), refusals of bad
input, and the page itself in headless Chromium, checked from screenshots."""

import io
import json
import re
import shutil

import numpy as np
import pytest
import torch

from stackrnn.errors import InputError
from stackrnn.inspect.features import text_features
from stackrnn.inspect.page import LOW, HIGH, correlations, gate_saturation, inspect_run, layer_units, page_data, rank_units
from stackrnn.inspect.page_template import render_page
from stackrnn.layers import LayerTrace
from stackrnn.train import open_run

QUOTED = 'He said "stop" and then (quietly) "go on"\nand left.\nThen "again" he said.\n'


def _page_json(html: str) -> dict:
    """The data a page reads, from its JSON script element."""
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S).group(1))


def _trace(h: torch.Tensor, c=None, gates=None, gate_names=()) -> LayerTrace:
    return LayerTrace(h, c, gates, gate_names)


# ---------------------------------------------------------------------------------------- ranking, saturation
def test_a_unit_that_tracks_quotes_is_ranked_first_with_r_1():
    tokens = list(QUOTED)
    feats = text_features(tokens)
    torch.manual_seed(0)
    h = 0.1 * torch.randn(len(tokens), 1, 1, 8)  # (T, B, K, H): noise
    h[:, 0, 0, 5] = torch.tensor(feats["inside_quotes"]) * 0.8 - 0.4  # planted: on inside quotes
    line = torch.tensor(feats["position_in_line"])
    h[:, 0, 0, 2] = -0.05 * line + 0.1 * torch.randn(len(tokens))  # planted: counts the line, negatively, noisily
    h[:, 0, 0, 7] = 0.3  # constant: correlates with nothing
    keys, acts = layer_units(_trace(h))
    order, units = rank_units(1, keys, acts, feats)
    assert [(u.unit, u.feature) for u in units[:2]] == [(5, "inside_quotes"), (2, "position_in_line")]
    assert units[0].r == pytest.approx(1.0, abs=1e-6) and -0.99 < units[1].r < -0.8
    assert units[0].label == "unit 5 (h) — inside_quotes r=+1.00"
    assert units[-1].unit == 7 and units[-1].feature is None and units[-1].r == 0.0
    assert order[:2] == [5, 2] and sorted(order) == list(range(8))
    strengths = [abs(u.r) for u in units]
    assert strengths == sorted(strengths, reverse=True)


def test_correlations_are_pearsons_r():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(50, 4))
    feats = {"a": rng.normal(size=50).tolist(), "b": list(range(50)), "flat": [1.0] * 50}
    r = correlations(acts, feats)  # (U, F)
    for u in range(4):
        for f, name in enumerate(["a", "b"]):
            assert r[u, f] == pytest.approx(np.corrcoef(acts[:, u], feats[name])[0, 1], abs=1e-12)
    assert (r[:, 2] == 0).all()  # a feature that never varies says nothing


def test_lstm_units_include_c_and_both_directions():
    h, c = torch.randn(6, 1, 2, 3), torch.randn(6, 1, 2, 3)
    keys, acts = layer_units(_trace(h, c))
    assert len(keys) == acts.shape[1] == 12 and acts.shape[0] == 6
    assert keys[:4] == [("h", "forward", 0), ("h", "forward", 1), ("h", "forward", 2), ("h", "reverse", 0)]
    assert keys[6] == ("c", "forward", 0)
    np.testing.assert_allclose(acts[:, 4], h[:, 0, 1, 1].double().numpy())
    np.testing.assert_allclose(acts[:, 9], c[:, 0, 1, 0].double().numpy())


def test_gate_saturation_counts_each_gate_apart():
    gates = torch.full((4, 1, 1, 3 * 2), 0.5)  # (T, B, K, N*H): input, forget, output with H = 2
    gates[:, :, :, 0:2] = 0.05  # input: always closed
    gates[:2, :, :, 2:4] = 0.95  # forget: open half the time
    gates[0, 0, 0, 4] = 0.1  # output: exactly 0.1 and 0.9 are not saturated
    gates[1, 0, 0, 5] = 0.9
    sat = gate_saturation(_trace(torch.zeros(4, 1, 1, 2), torch.zeros(4, 1, 1, 2), gates, ("input", "forget", "output")))
    assert sat == {"input": {"below_0.1": 1.0, "above_0.9": 0.0}, "forget": {"below_0.1": 0.0, "above_0.9": 0.5},
                   "output": {"below_0.1": 0.0, "above_0.9": 0.0}}
    assert gate_saturation(_trace(torch.zeros(4, 1, 1, 2))) == {}  # an Elman RNN has no gates


def test_the_page_data_cannot_end_its_script_element():
    tokens = list("a</script><b>")
    feats = text_features(tokens)
    keys, acts = layer_units(_trace(torch.randn(len(tokens), 1, 1, 2)))
    from stackrnn.inspect.page import LayerReport

    _, units = rank_units(1, keys, acts, feats)
    page = render_page(page_data("run", "char", tokens, [LayerReport(1, "gru", 2, 1, {}, units)], [acts.T]))
    assert page.count("</script>") == 2  # the data element's and the code's own
    data = _page_json(page)
    assert "".join(data["tokens"]) == "a</script><b>"
    assert "no gates (gru)" in page


# ------------------------------------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def text(text_file) -> str:
    """The first lines of the training text: every character is in the run's vocabulary."""
    return text_file.read_text(encoding="utf-8")[:600]


@pytest.fixture(scope="module")
def page(trained_run, text, tmp_path_factory):
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
    out = tmp_path_factory.mktemp("inspect") / "page"
    return inspect_run(trained_run, text, out, units=12)


def test_inspect_run_writes_the_page_plots_and_summary(page, text):
    out = page.out
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in page.files) == [
        "gate_saturation.png", "index.html", "layer1_activations.png", "layer2_activations.png", "summary.json"]
    for name in ("gate_saturation.png", "layer1_activations.png", "layer2_activations.png"):
        import matplotlib.pyplot as plt

        image = plt.imread(str(out / name))
        assert image.shape[0] > 250 and image.shape[1] > 400 and image.std() > 0.01  # a real picture, not blank
    assert page.tokens == len(text) and not page.truncated
    html = (out / "index.html").read_text(encoding="utf-8")
    # self-contained: nothing is fetched, from the network or beside the file
    assert not re.search(r"https?://|<script[^>]+src=|<link|@import|url\(", html)
    data = _page_json(html)
    assert "".join(data["tokens"]) == text and [len(layer["units"]) for layer in data["layers"]] == [12, 12]
    values = [v for layer in data["layers"] for u in layer["units"] for v in u["values"]]
    assert len(values) == 2 * 12 * len(text) and all(round(v, 3) == v for v in values)
    assert "\u21b5\n" in data["shown"]  # newlines drawn and kept


def test_summary_json_is_the_result_and_holds_the_top_units(page):
    summary = json.loads((page.out / "summary.json").read_text(encoding="utf-8"))
    assert summary == json.loads(json.dumps(page.to_dict()))
    assert [layer["layer"] for layer in summary["layers"]] == [1, 2]
    for layer in summary["layers"]:
        assert layer["cell"] == "lstm" and layer["hidden_size"] == 32 and len(layer["top_units"]) == 12
        strengths = [abs(u["r"]) for u in layer["top_units"]]
        assert strengths == sorted(strengths, reverse=True) and strengths[0] > 0.2
        assert set(layer["saturation"]) == {"input", "forget", "output"}


def test_ranks_and_saturation_match_a_direct_computation(page, trained_run, text):
    _, task, model = open_run(trained_run, task="lm")
    with torch.no_grad():
        traces = model.states(torch.tensor(task.tokenizer.encode(text))[:, None])
    feats = text_features(list(text))
    for report, trace in zip(page.layers, traces):
        for gate, name in enumerate(trace.gate_names):
            g = trace.gates[:, 0, 0, gate * 32:(gate + 1) * 32]  # (T, H)
            assert report.saturation[name]["below_0.1"] == pytest.approx((g < LOW).float().mean().item(), abs=1e-6)
            assert report.saturation[name]["above_0.9"] == pytest.approx((g > HIGH).float().mean().item(), abs=1e-6)
        top = report.top_units[0]
        series = (trace.h if top.state == "h" else trace.c)[:, 0, 0, top.unit].double().numpy()
        assert top.r == pytest.approx(np.corrcoef(series, feats[top.feature])[0, 1], abs=1e-4)
        # no unit, of h or c, correlates more strongly with any feature
        everything = np.concatenate([trace.h[:, 0, 0].double().numpy(), trace.c[:, 0, 0].double().numpy()], axis=1)
        assert abs(top.r) == pytest.approx(np.abs(correlations(everything, feats)).max(), abs=1e-4)


def test_a_long_text_is_cut_with_a_notice(trained_run, text, tmp_path):
    with pytest.warns(UserWarning, match="only the first 40 are read"):
        result = inspect_run(trained_run, text, tmp_path / "cut", units=4, max_tokens=40, plots=False)
    assert result.truncated and result.tokens == 40
    assert [p.name for p in result.files] == ["index.html", "summary.json"]
    assert "cut to its first 40 tokens" in (tmp_path / "cut" / "index.html").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["truncated"] is True


def test_bad_input_is_refused_and_nothing_is_written(trained_run, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"1 token\(s\) not in the model's vocabulary \('\u2603'\)"):
        inspect_run(trained_run, "snow \u2603 man", out)
    with pytest.raises(InputError, match="--text is empty"):
        inspect_run(trained_run, "", out)
    with pytest.raises(InputError, match="--units: expected an integer >= 1"):
        inspect_run(trained_run, "the", out, units=0)
    with pytest.raises(InputError, match="does not exist"):
        inspect_run(tmp_path / "no-run", "the", out)
    assert not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty, and is never overwritten: pick a new --out"):
        inspect_run(trained_run, "the", out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="is a file"):
        inspect_run(trained_run, "the", out / "mine.txt")


# ------------------------------------------------------------------------------------------------ browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _colours(png: bytes) -> tuple[int, int]:
    """(reddish, bluish) pixel counts of a screenshot: the coloured backgrounds of positive and negative
    activations."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r - b > 60) & (r - g > 60)).sum()), int(((b - r > 60) & (b - g > 60)).sum())


def test_the_page_works_in_headless_chromium(page, tmp_path):
    if CHROMIUM is None:  # (scripts/setup.sh installs playwright, the Python package, but no browser)
        pytest.skip("no chromium on PATH: install one with `sudo apt-get install chromium` (or chromium-browser) to "
                    "run this test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is not installed")
    pytest.importorskip("PIL", reason="Pillow is not installed")
    data = _page_json((page.out / "index.html").read_text(encoding="utf-8"))
    units = data["layers"][0]["units"]
    # a unit with both clearly positive and clearly negative values, so both colours must show
    both = next(i for i, u in enumerate(units) if min(u["values"]) / u["scale"] < -0.4 < 0.4 < max(u["values"]) / u["scale"])
    other = next(i for i in range(len(units)) if i != both)
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1000, "height": 800})
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.goto((page.out / "index.html").resolve().as_uri())
            block = tab.locator("#layer0")
            assert block.locator("select option").count() == 12
            assert block.locator(".text span").count() == page.tokens
            tab.select_option("#layer0 select", index=both)
            assert units[both]["label"] in block.locator(".info").inner_text()
            shot = block.screenshot(path=str(tmp_path / "both.png"))
            red, blue = _colours(shot)
            assert red > 200 and blue > 200, (red, blue)
            tab.select_option("#layer0 select", index=other)
            assert block.screenshot(path=str(tmp_path / "other.png")) != shot
            # keyboard: with the layer active, arrow down steps to the next unit
            block.locator("h2").click()
            tab.keyboard.press("ArrowDown")
            assert block.locator("select").evaluate("s => s.selectedIndex") == other + 1
            # clicking a token picks the unit most active there
            values = np.array([np.abs(u["values"][3]) / u["scale"] for u in units])
            block.locator(".text span").nth(3).click()
            assert block.locator("select").evaluate("s => s.selectedIndex") == int(values.argmax())
        finally:
            browser.close()
    assert errors == []



def test_the_inspect_command_prints_the_top_units_and_writes_the_page(trained_run, text_file, tmp_path, capsys):
    from stackrnn.cli import main

    out = tmp_path / "page"
    capsys.readouterr()
    assert main(["inspect", str(trained_run), "--text-file", str(text_file), "--max-tokens", "400", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "layer 1 (lstm 32)" in printed and "layer 2 (lstm 32)" in printed and "gates: input" in printed
    assert " r=" in printed and f"page: {out / 'index.html'} (400 tokens, cut)" in printed
    assert (out / "index.html").is_file() and (out / "summary.json").is_file()


@pytest.mark.parametrize("argv,expected", [
    (["--text", "abc", "--text-file", "x.txt"], "one of them"),
    ([], "--text TEXT or --text-file"),
    (["--text-file", "/nonexistent/file.txt"], "no such file"),
])
def test_bad_inspect_arguments_are_one_line_and_write_nothing(trained_run, tmp_path, capsys, argv, expected):
    from stackrnn.cli import main

    out = tmp_path / "page"
    assert main(["inspect", str(trained_run), *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and not out.exists()


def test_the_browser_test_says_how_to_get_chromium(monkeypatch):
    """Set-up installs playwright's Python package, not a browser: the skip says how to get one."""
    import sys

    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", None)
    with pytest.raises(pytest.skip.Exception) as skipped:
        test_the_page_works_in_headless_chromium(page=None, tmp_path=None)
    assert "apt-get install chromium" in str(skipped.value) and "setup.sh" not in str(skipped.value)
