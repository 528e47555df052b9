"""The explorer page as a file: any text embeds safely, the payload checks what it is given."""
from __future__ import annotations

import json
import re

import pytest
import torch

import lstmkit as lk
from lstmkit.viz import collect_states
from lstmkit.viz.explorer import build_payload, render_page, write_explorer

DATA = re.compile(r'<script type="application/json" id="lk-data">(.*?)</script>', re.S)


def states_for(text: str, **kw):
    torch.manual_seed(0)
    lstm = lk.LSTM(3, 4, **kw)
    return collect_states(lstm, torch.randn(len(text), 3), list(text), title=kw.pop("title", ""))


def test_text_that_looks_like_html_cannot_break_out_of_the_page(tmp_path):
    text = 'a</script><script>alert(1)</script><!-- "é\U0001F600\n'
    s = states_for(text)
    s.title = "<b>run</b>"
    path = write_explorer(s, str(tmp_path / "p.html"), text=text)
    page = open(path, encoding="utf-8").read()
    assert page.lower().count("</script>") == 2  # the data element's and the code's own, nothing from the text
    assert page.count("<!--") == page.count("-->")
    assert "<title>&lt;b&gt;run&lt;/b&gt;</title>" in page
    d = json.loads(DATA.search(page).group(1))
    assert d["text"] == text and d["steps"] == len(text)  # code points, as the page's Array.from(text)


def test_payload_checks_its_arguments():
    s = states_for("abcdef")
    with pytest.raises(ValueError, match="text has 3 characters but the states have 6 steps"):
        build_payload(s, text="abc")
    with pytest.raises(ValueError, match="give the text of a character model, or states collected with series="):
        build_payload(s)
    with pytest.raises(ValueError, match=r"layer must be in \[0, 0\] \(0-based\), got 2"):
        build_payload(s, text="abcdef", layer=2)
    with pytest.raises(ValueError, match=r"unit must be in \[0, 3\], got 4"):
        build_payload(s, text="abcdef", unit=4)
    with pytest.raises(ValueError, match="quantity must be one of i, f, g, o, c, h; got 'z'"):
        build_payload(s, text="abcdef", quantity="z")


def test_payload_shape_for_a_bidirectional_projected_lstm():
    s = states_for("abcdefgh", num_layers=2, bidirectional=True, proj_size=2)
    d = build_payload(s, text="abcdefgh", layer=1, quantity="h", unit=1, bits=16)
    assert d["model"] == {"layers": 2, "directions": 2, "hidden": 4, "proj": 2, "variants": []}
    assert len(d["arrays"]["h"]) == 2 and len(d["arrays"]["h"][1]) == 2
    assert all(e["bits"] == 16 for q in "ifgoch" for layer in d["arrays"][q] for e in layer)
    assert len(d["span"][1][1]) == 4 and d["span_cap"] == 80
    assert d["defaults"] == {"layer": 1, "direction": 0, "quantity": "h", "unit": 1, "pattern": "",
                             "rank_quantity": "c"}
    page = render_page(d)
    assert page.startswith("<!DOCTYPE html>") and "/*LK_" not in page and "LK_TITLE" not in page
