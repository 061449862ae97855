"""The page of `stackrnn serve` in headless Chromium (Playwright driving the system browser, as the inspect page's
test does): it loads with nothing from other sites, a generation streams into it token by token and then shows
the activation view, a classification shows a label, a translation shows its attention map, a forecast draws a
series' history, median and bands as an SVG."""

from __future__ import annotations

import re
import shutil

import pytest

import stackrnn

pytest.importorskip("fastapi", reason="fastapi (the serve extra) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the serve extra) is not installed")

from tests.serving import classifier_run, forecast_run, live, translator_run  # noqa: E402,F401 (fixtures)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_page_is_self_contained():
    from stackrnn.serve.page import render_page

    html = render_page()
    assert not re.search(r"https?://|<script[^>]+src=|<link|@import|url\(", html)
    assert html.count("<script>") == 1 and "mountActivations" in html


def test_the_page_works_in_headless_chromium(trained_run, classifier_run, translator_run, forecast_run, tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: install one with `sudo apt-get install chromium` (or chromium-browser) to "
                    "run this test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is not installed")
    lm = stackrnn.load(trained_run)
    runs = {"tiny": lm, "sentiment": classifier_run, "fr": translator_run, "sales": forecast_run}
    errors, outside = [], []
    with live(runs, window=0.002) as (url, _), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1100, "height": 900})
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
            tab.goto(url)
            tab.wait_for_selector("body[data-ready=true]")
            assert tab.locator("#runs").inner_text() == "tiny (lm), sentiment (classify), fr (translate), sales (forecast)"

            # generate: the text streams in, one event per token, then every layer's activation view
            tab.fill("#gen-prompt", "The ")
            tab.fill("#gen-length", "60")
            tab.fill("#gen-temperature", "0.7")
            tab.fill("#gen-top-k", "5")
            tab.fill("#gen-seed", "7")
            tab.click("#gen-go")
            tab.wait_for_selector("#gen-output[data-done=true]", timeout=20_000)
            output = tab.locator("#gen-output")
            assert output.get_attribute("data-events") == "60"
            assert output.inner_text() == lm.generate("The ", 60, temperature=0.7, top_k=5, seed=7)
            tab.wait_for_selector("#gen-activations[data-layers='2']", timeout=20_000)
            view = tab.locator("#gen-activations")
            assert view.locator("section.layer").count() == 2
            assert view.locator("#layer0 select option").count() == 16
            assert view.locator("#layer1 .text span").count() == 64  # the prompt's 4 tokens and the 60 new
            view.locator("#layer1 select").select_option(index=3)
            assert "unit" in view.locator("#layer1 .info").inner_text()

            # classify: a label, one of the run's
            tab.fill("#cls-text", "a great movie")
            tab.click("#cls-go")
            tab.wait_for_selector("#cls-label")
            assert tab.locator("#cls-label").inner_text() == classifier_run.predict("a great movie")["label"]
            assert tab.locator("#cls-output .bars > div").count() == 2

            # translate: the translation and its attention map, a row per target word (and <eos>)
            tab.fill("#tr-text", "The cat sees the dog.")
            tab.fill("#tr-beam", "1")
            tab.click("#tr-go")
            tab.wait_for_selector("#tr-attention table")
            translation = translator_run.translate("The cat sees the dog.", beam=1)
            assert tab.locator("#tr-output").inner_text() == translation
            assert tab.locator("#tr-attention tbody tr").count() == len(translation.split()) + 1

            # forecast: a series' last 42 values, then its median and 80% and 95% bands over the 14 steps, as SVG
            assert tab.locator("#fc-series option").count() == 3 and tab.locator("#fc-horizon").input_value() == "14"
            tab.select_option("#fc-series", "s1")
            tab.fill("#fc-samples", "100")
            tab.click("#fc-go")
            tab.wait_for_selector("#fc-chart svg #fc-median", timeout=20_000)
            chart = tab.locator("#fc-chart")
            assert chart.get_attribute("data-steps") == "14"
            assert all(chart.locator(f"#{i}").count() == 1 for i in ("fc-history", "fc-band-80", "fc-band-95"))
            assert chart.locator("#fc-median").get_attribute("d").count("L") == 13  # a point per step
            assert "s1: the last 42 values" in chart.inner_text()
            tab.select_option("#fc-split", "test")  # the held-out steps, drawn dashed beside the forecast
            tab.click("#fc-go")
            tab.wait_for_selector("#fc-chart #fc-actual", timeout=20_000)
            tab.screenshot(path=str(tmp_path / "page.png"), full_page=True)

            # a refusal shows its message, and the page goes on working
            tab.fill("#gen-prompt", "\u2603")
            tab.click("#gen-go")
            tab.wait_for_selector("#gen-output .error")
            assert "not in the run's vocabulary" in tab.locator("#gen-output").inner_text()
        finally:
            browser.close()
    assert errors == [] or all("422" in e for e in errors), errors  # (the browser logs the refused request)
    assert outside == []
