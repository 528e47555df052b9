"""The gate explorer for the xLSTM cells: collect_states on lk.sLSTM (i, f, z, o, c, n, m, h)
and lk.mLSTM (i, f, o, n, m, h), memory spans from the true forget gate, the page's payload, the
page in a browser, and ``lstmkit inspect`` on sLSTM / mLSTM text runs."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lstmkit as lk
from lstmkit.cli import main
from lstmkit.viz import collect_states
from lstmkit.viz.explorer import build_payload, dequantize, write_explorer
from lstmkit.xlstm.slstm_reference import recurrent_product

from headless_browser import browser  # noqa: F401 (fixture)

PAGE_DATA = re.compile(r'<script type="application/json" id="lk-data">(.*?)</script>', re.S)


def _slstm():
    torch.manual_seed(0)
    return lk.sLSTM(3, 4, num_layers=2, bidirectional=True, num_heads=2, backend="reference")


def test_slstm_states_are_the_modules_gates_and_spans_use_the_true_forget_gate():
    model = _slstm()
    x = torch.randn(12, 3)
    s = collect_states(model, x, list("abcdefghijkl"))
    assert s.quantities == ("i", "f", "z", "o", "c", "n", "m", "h") and s.memory == "c"
    assert (s.num_layers, s.num_directions, s.steps, s.hidden_size) == (2, 2, 12, 4)
    with torch.no_grad():
        gates = model(x, return_gates=True).gates
    for q in s.quantities:
        np.testing.assert_allclose(s.values[q], getattr(gates, q).numpy(), rtol=1e-6, atol=1e-7, err_msg=q)
    # what memory spans see: σ(f̃_t) itself, recomputed from the weights and the recorded h_{t-1}
    g = gates.layer(0, 0)
    pre = F.linear(x, model.weight_ih_l0, model.bias_ih_l0) + model.bias_hh_l0
    h_prev = torch.cat([torch.zeros(1, 4), g.h[:-1]])
    with torch.no_grad():
        f_pre = (pre + recurrent_product(h_prev, model.weight_hh_l0))[:, 4:8]
    np.testing.assert_allclose(s.kept(0, 0)[1:], torch.sigmoid(f_pre)[1:].numpy(), rtol=1e-5, atol=1e-6)
    assert (s.kept(0, 0)[0] == 0).all()  # the first step's memory is empty: nothing to keep


def test_mlstm_states_repeat_head_values_over_the_heads_units():
    torch.manual_seed(0)
    model = lk.mLSTM(3, 4, num_heads=2)
    x = torch.randn(9, 3)
    s = collect_states(model, x)
    assert s.quantities == ("i", "f", "o", "n", "m", "h") and s.memory == "h"
    with torch.no_grad():
        gates = model(x, return_gates=True).gates
    assert s.get("m").shape == (9, 4)
    np.testing.assert_allclose(s.get("m")[:, [0, 1]], gates.m[0, 0, :, [0, 0]].numpy(), rtol=1e-6)  # head 0, units 0-1
    np.testing.assert_allclose(s.get("f")[:, 3], gates.f[0, 0, :, 1].numpy(), rtol=1e-6)  # head 1, unit 3
    f_pre = F.linear(x, model.weight_ih_l0, model.bias_ih_l0)[:, 4 * 4 + 2:]  # (T, NH): no recurrence in mLSTM
    np.testing.assert_allclose(s.kept()[1:, ::2], torch.sigmoid(f_pre)[1:].detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["slstm", "mlstm"])
def test_payload_names_the_cells_quantities(cell):
    model = _slstm() if cell == "slstm" else lk.mLSTM(3, 4, num_heads=2)
    s = collect_states(model, torch.randn(7, 3))
    p = build_payload(s, text="abcdefg")
    assert p["quantities"] == list(s.quantities) and set(p["names"]) >= set(s.quantities)
    assert p["model"]["cell"] == cell and p["model"]["num_heads"] == 2
    memory = "c" if cell == "slstm" else "h"
    assert p["trajectory"] == memory and p["defaults"]["quantity"] == memory
    entry = p["arrays"]["m"][0][0]
    np.testing.assert_allclose(dequantize(entry, (7, 4)), s.get("m"), atol=(entry["hi"] - entry["lo"]) / 255 + 1e-6)
    with pytest.raises(ValueError, match="quantity must be one of"):
        build_payload(s, text="abcdefg", quantity="g")


def test_slstm_page_in_a_browser_shows_n_and_m(browser, tmp_path):
    from test_explorer_browser import Watched

    s = collect_states(_slstm(), torch.randn(40, 3), title="sLSTM")
    path = write_explorer(s, str(tmp_path / "slstm.html"), text="the quick brown fox jumps over the lazy ")
    w = Watched(browser)
    page = w.open("file://" + path)
    options = page.eval_on_selector_all("#quantity option", "os => os.map(o => o.value)")
    assert options == ["i", "f", "z", "o", "c", "n", "m", "h"]
    colours = "Array.from(document.querySelectorAll('#text span')).map(s => s.style.backgroundColor).join(';')"
    before = page.evaluate(colours)
    page.select_option("#quantity", "n")
    assert page.evaluate(colours) != before  # the text is recoloured by the normalizer
    page.select_option("#quantity", "m")
    assert "stabilizer" in page.text_content("#legend-label")
    w.shot(tmp_path, "explorer_slstm.png")
    assert w.errors == [] and all(u.startswith(("file:", "data:", "about:")) for u in w.requests)


@pytest.mark.parametrize("cell", ["slstm", "mlstm"])
def test_inspect_an_xlstm_text_run(cell, tmp_path, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text('ab "cd" ef\ngh "a b" c\n' * 60, encoding="utf-8")
    run = str(tmp_path / "run")
    assert main(["train", "text", "--data", str(data), "--run_dir", run, "--model", cell, "--num_heads", "2",
                 "--hidden_size", "8", "--embedding_size", "6", "--seq_len", "16", "--train.batch_size", "4",
                 "--train.steps", "3", "--train.progress", "off", "--train.plot", "false", "--train.threads", "1"]) == 0
    page, figures = str(tmp_path / "page.html"), str(tmp_path / "fig")
    assert main(["inspect", run, "--text", 'ab "cd" ef gh', "--out", page, "--pattern", '"[^"]*"',
                 "--quantity", "m", "--figures", figures]) == 0
    out = capsys.readouterr().out
    with open(page, encoding="utf-8") as f:
        data = json.loads(PAGE_DATA.search(f.read()).group(1))
    assert "n" in data["quantities"] and "m" in data["quantities"] and data["defaults"]["quantity"] == "m"
    assert ("(c)" if cell == "slstm" else "(h)") in out and "gate_strip.png" in out
    assert main(["inspect", run, "--text", "ab", "--out", page, "--quantity", "g" if cell == "slstm" else "z"]) == 2
    assert "this model records" in capsys.readouterr().err
