"""The explorer page in a real browser: headless Debian chromium driven by Playwright.

The page must load with no console error and fetch nothing from the network; choosing a unit
must recolour the heatmap; typing a regex must rank first the unit built by hand to track it
(lstmkit.viz.constructed.quote_tracker — a constructed unit, not a trained one); the browser's
scores must equal Python's. Screenshots are kept under test-artifacts/explorer/ (gitignored).

Outside CI, no chromium or no playwright skips with the reason; in CI (CI=true) it fails.
"""
from __future__ import annotations

import math
import os
import shutil
import threading

import numpy as np
import pytest
import torch

from lstmkit.viz import collect_states, pattern_mask, pearson_scores
from lstmkit.viz.constructed import quote_tracker
from lstmkit.viz.explorer import build_payload, dequantize, render_page, write_explorer
from lstmkit.viz.server import make_server

from test_viz_states import ALPHABET, QUOTES, TRACKER, quoted_text
from headless_browser import browser, unavailable  # noqa: F401 (fixture)

ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts", "explorer")




class Watched:
    """A page that records console errors, page errors and every request it makes."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str):
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        return self.page

    def shot(self, tmp_path, name: str) -> str:
        path = str(tmp_path / name)
        self.page.screenshot(path=path, full_page=True)
        os.makedirs(ARTIFACTS, exist_ok=True)
        shutil.copy(path, os.path.join(ARTIFACTS, name))
        return path


@pytest.fixture(scope="module")
def quote_page(tmp_path_factory):
    text = quoted_text(1500)
    lstm, encode = quote_tracker(ALPHABET, hidden_size=16, num_layers=2, unit=TRACKER)
    states = collect_states(lstm, encode(text), list(text), title="hand-set quote tracker")
    path = str(tmp_path_factory.mktemp("page") / "quotes.html")
    write_explorer(states, path, text=text, layer=0, unit=0)
    return path, text, states


def text_colours(page) -> list[str]:
    return page.eval_on_selector_all("#text span", "els => els.slice(0, 400).map(e => e.style.backgroundColor)")


def test_page_loads_clean_and_choosing_a_unit_recolours_it(browser, quote_page, tmp_path):
    path, text, states = quote_page
    w = Watched(browser)
    page = w.open("file://" + path)
    assert page.locator("#text span").count() == len(text)
    before, strip_before = text_colours(page), page.eval_on_selector("#strip", "c => c.toDataURL()")
    assert len(set(before)) > 5  # really coloured
    page.fill("#unit", str(TRACKER))
    after, strip_after = text_colours(page), page.eval_on_selector("#strip", "c => c.toDataURL()")
    assert after != before and strip_after != strip_before
    assert page.eval_on_selector("#unit-info", "e => e.textContent").startswith("of 16")
    # the colours follow the unit: inside quotes red (c > 0), outside blue (c < 0)
    inside = pattern_mask(text, QUOTES) > 0
    rgb = [tuple(int(v) for v in c[4:-1].split(",")) for c in after]
    reds = [r > b for r, g, b in rgb]
    agree = np.mean([red == ins for red, ins in zip(reds, inside[:400])])
    assert agree > 0.9
    page.select_option("#quantity", "f")
    assert text_colours(page) != after
    w.shot(tmp_path, "explorer_unit.png")
    assert w.errors == []
    assert all(u.startswith(("file:", "data:")) for u in w.requests), w.requests


def test_typing_a_regex_ranks_the_constructed_unit_first(browser, quote_page, tmp_path):
    path, text, states = quote_page
    w = Watched(browser)
    page = w.open("file://" + path)
    page.fill("#pattern", QUOTES)
    first = page.locator("#units tbody tr").first
    assert first.get_attribute("data-unit") == str(TRACKER)
    r_text = float(first.locator("td").nth(2).inner_text())
    assert r_text > 0.85
    assert "matches" in page.inner_text("#pattern-msg")
    # the browser's score is Python's, on the same (quantized) values
    js = np.array(page.evaluate("lkExplorer.scores()"))
    entry = build_payload(states, text=text)["arrays"]["c"][0][0]
    py = pearson_scores(pattern_mask(text, QUOTES), dequantize(entry, states.get("c", 0).shape))
    np.testing.assert_allclose(js, py, atol=1e-6)
    # clicking the row selects the unit
    first.click()
    assert page.input_value("#unit") == str(TRACKER)
    w.shot(tmp_path, "explorer_pattern.png")
    # a bad regex is reported in the page, not thrown
    page.fill("#pattern", "(a")
    assert "not a regular expression" in page.inner_text("#pattern-msg")
    page.fill("#pattern", "z")
    assert "matches no character" in page.inner_text("#pattern-msg")
    # another hypothesis: position in line (continuous); the layer switch keeps working
    page.select_option("#signal", "line")
    assert page.locator("#units tbody tr").count() == 16
    page.select_option("#layer", "1")
    assert page.locator("#units tbody tr").count() == 16
    assert w.errors == []


def test_forecaster_page_draws_the_series_with_the_gates_aligned(browser, tmp_path):
    T = 96
    t = np.arange(T)
    y = 100 + 10 * np.sin(2 * math.pi * t / 12) + 0.3 * t
    torch.manual_seed(0)
    import lstmkit as lk

    lstm = lk.LSTM(1, 8, num_layers=2, bidirectional=True)
    x = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)[:, None]
    labels = [f"{1950 + k // 12}-{k % 12 + 1:02d}" for k in range(T)]
    states = collect_states(lstm, x, labels, series=y, title="sine series")
    path = write_explorer(states, str(tmp_path / "series.html"), layer=1)
    w = Watched(browser)
    page = w.open("file://" + path)
    assert page.is_visible("#series") and page.is_visible("#heat") and not page.is_visible("#text")
    widths = page.evaluate("['series', 'strip', 'heat'].map(id => document.getElementById(id).width)")
    assert len(set(widths)) == 1  # one time axis for the series and the gates
    before = page.eval_on_selector("#strip", "c => c.toDataURL()")
    page.click("#heat", position={"x": 60, "y": 3 * 8 + 4})  # row of unit 3 (8 px per unit)
    assert page.input_value("#unit") == "3"
    assert page.eval_on_selector("#strip", "c => c.toDataURL()") != before
    first = page.locator("#units tbody tr").first.get_attribute("data-unit")
    js_order = page.evaluate("lkExplorer.ranking()")
    entry = build_payload(states, layer=1)["arrays"]["c"][1][0]
    r = pearson_scores(y, dequantize(entry, states.get("c", 1).shape))
    assert int(first) == js_order[0] == int(np.argmax(np.abs(r)))
    w.shot(tmp_path, "explorer_series.png")
    forward = page.eval_on_selector("#strip", "c => c.toDataURL()")
    page.select_option("#direction", "1")  # the reverse direction of the bidirectional LSTM
    assert page.eval_on_selector("#strip", "c => c.toDataURL()") != forward
    assert w.errors == []


def test_live_page_runs_the_model_on_new_text(browser, tmp_path):
    lstm, encode = quote_tracker(ALPHABET, hidden_size=8, unit=2)
    text = quoted_text(300)

    def payload(t: str, live: bool = True) -> dict:
        return build_payload(collect_states(lstm, encode(t), list(t)), text=t, live=live)

    def compute(req: dict) -> dict:
        try:
            return payload(req["text"])
        except ValueError as e:
            raise ValueError(str(e)) from None

    server = make_server(render_page(payload(text)), compute)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w = Watched(browser)
        page = w.open("http://127.0.0.1:%d/" % server.server_address[1])
        assert page.is_visible("#live")
        page.fill("#live-text", 'ab "cd" ef')
        page.click("#live-run")
        page.wait_for_function("document.querySelectorAll('#text span').length === 10", timeout=20_000)
        assert "ran the model on 10 characters" in page.inner_text("#live-msg")
        page.fill("#live-text", "xyz")
        page.click("#live-run")
        page.wait_for_function("document.getElementById('live-msg').textContent.includes('not in the alphabet')",
                               timeout=20_000)
        assert page.locator("#text span").count() == 10  # the page kept the last good input
        w.shot(tmp_path, "explorer_live.png")
        # the refused text is a 400 the page reports; the browser logs that response as an error
        assert [e for e in w.errors if "400" not in e] == []
    finally:
        server.shutdown()
        server.server_close()
