"""lstmkit.viz: gates collected over an input, memory spans, hypothesis ranking, page data encoding."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import lstmkit as lk
from lstmkit.viz import (PatternError, collect_states, line_position, memory_span, pattern_mask, pearson_scores,
                         rank_units)
from lstmkit.viz.constructed import quote_tracker
from lstmkit.viz.explorer import dequantize, quantize

QUOTES = '"[^"]*"'
ALPHABET = 'abcdefgh "\n'
TRACKER = 5


def quoted_text(n: int = 1500, seed: int = 0) -> str:
    """Words over a..h, some of them quoted, some lines broken: text with a known structure."""
    rnd = random.Random(seed)
    words = []
    while sum(len(w) + 1 for w in words) < n:
        w = "".join(rnd.choice("abcdefgh") for _ in range(rnd.randint(1, 6)))
        if rnd.random() < 0.15:
            w = '"' + w + " " + w[::-1] + '"'
        if rnd.random() < 0.1:
            w += "\n"
        words.append(w)
    return " ".join(words)[:n]


@pytest.mark.parametrize("kwargs", [dict(num_layers=2, bidirectional=True), dict(num_layers=1, proj_size=3),
                                    dict(num_layers=2, peephole=True, layer_norm=True)])
def test_states_are_the_values_return_gates_gives(kwargs):
    torch.manual_seed(0)
    lstm = lk.LSTM(5, 7, **kwargs).train()
    x = torch.randn(11, 5)
    s = collect_states(lstm, x, labels=list("abcdefghijk"))
    assert lstm.training  # put back in the mode it was in
    with torch.no_grad():
        ref = lstm.eval()(x, return_gates=True).gates  # (L, D, T, ·)
    L, D = lstm.num_layers, 2 if lstm.bidirectional else 1
    assert (s.num_layers, s.num_directions, s.steps, s.hidden_size) == (L, D, 11, 7)
    for q in "ifgoch":
        assert s.values[q].dtype == np.float32
        assert s.values[q].shape == tuple(getattr(ref, q).shape)
        np.testing.assert_allclose(s.values[q], getattr(ref, q).numpy(), rtol=0, atol=0)
    assert s.get("c", layer=L - 1, direction=D - 1).shape == (11, 7)
    assert s.units("h") == (kwargs.get("proj_size") or 7)
    assert s.labels == list("abcdefghijk")


def test_states_reject_bad_input_with_what_was_expected():
    lstm = lk.LSTM(3, 4)
    with pytest.raises(ValueError, match=r"one sequence shaped \(T, I\) = \(steps, 3\), got \(2, 5, 3\)"):
        collect_states(lstm, torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="labels must name each of the 5 steps, got 4"):
        collect_states(lstm, torch.randn(5, 3), labels="abcd")
    with pytest.raises(ValueError, match="series must hold one value per step \\(5\\), got 2"):
        collect_states(lstm, torch.randn(5, 3), series=[1.0, 2.0])
    with pytest.raises(TypeError, match="needs an lstmkit.LSTM, sLSTM or mLSTM, got LSTM"):
        collect_states(torch.nn.LSTM(3, 4), torch.randn(5, 3))
    s = collect_states(lstm, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"layer must be in \[0, 0\] \(0-based\), got 1"):
        s.get("c", layer=1)
    with pytest.raises(ValueError, match="quantity must be one of i, f, g, o, c, h; got 'x'"):
        s.get("x")


@pytest.mark.parametrize("f, span", [(0.5, 1), (0.9, 7), (0.99, 69), (0.0, 1)])
def test_memory_span_of_a_constant_forget_gate(f, span):
    # ceil(ln ½ / ln f): 0.9^6 = 0.53 still holds half, 0.9^7 = 0.48 does not
    assert memory_span(np.full((400, 1), f)).tolist() == [span]


def test_memory_span_counts_the_steps_between_resets_and_caps_what_never_fades():
    f = np.ones((200, 3))
    f[::20, 0] = 0.0  # a unit that holds everything but is wiped every 20 steps
    f[:, 2] = 0.5
    span = memory_span(f)
    assert 8 <= span[0] <= 12  # content written at a random step survives to the next reset: ~10 steps
    assert span[1] == 2000  # never forgets: the cap, 10 × T
    assert span[2] == 1
    assert memory_span(f, cap=50)[1] == 50
    with pytest.raises(ValueError, match=r"f must be \(T, H\) forget-gate values"):
        memory_span(np.ones(5))


def test_pattern_mask_and_line_position_golden():
    text = 'say "hi"\nnow "a b" x'
    assert pattern_mask(text, QUOTES).astype(int).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert pattern_mask(text, "^.").astype(int).tolist()[:10] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]  # multiline: ^ per line
    assert pattern_mask(text, "x*").sum() == 1  # zero-length matches mark nothing
    assert line_position("ab\ncd").tolist() == [0, 1, 2, 0, 1]


def test_bad_patterns_raise_one_clear_error():
    with pytest.raises(PatternError, match=r"pattern '\(a' is not a valid regular expression: missing \)"):
        pattern_mask("abc", "(a")
    with pytest.raises(PatternError, match="non-empty regular expression"):
        pattern_mask("abc", "")
    with pytest.raises(PatternError, match="matches no character of the input"):
        rank_units(pattern_mask("abc", "z"), np.random.rand(3, 2))
    with pytest.raises(PatternError, match="matches every character"):
        rank_units(pattern_mask("abc", "."), np.random.rand(3, 2))


def test_pearson_scores_match_numpy_and_flat_units_score_zero():
    rng = np.random.default_rng(0)
    s = rng.normal(size=50)
    a = rng.normal(size=(50, 4))
    a[:, 1] = 3.0 * s + 1.0  # perfectly tracks
    a[:, 2] = 7.0  # flat
    r = pearson_scores(s, a)
    for u in (0, 3):
        assert r[u] == pytest.approx(np.corrcoef(s, a[:, u])[0, 1], abs=1e-12)
    assert r[1] == pytest.approx(1.0) and r[2] == 0.0
    order, r2 = rank_units(s, -a)
    assert order[0] == 1 and r2[1] == pytest.approx(-1.0)  # ranked by |r|; the sign is kept


def test_the_constructed_unit_tracks_quotes_and_ranks_first():
    text = quoted_text()
    lstm, encode = quote_tracker(ALPHABET, hidden_size=16, num_layers=2, unit=TRACKER)
    s = collect_states(lstm, encode(text), list(text))
    c = s.get("c", 0)[:, TRACKER]
    inside = pattern_mask(text, QUOTES) > 0
    # the cell flips at each quote: ≈ +1 after an opening quote, ≈ -1 after a closing one
    opening = [m for m in range(len(text)) if text[m] == '"' and text[:m].count('"') % 2 == 0]
    assert all(c[m] > 0.9 for m in opening)
    assert c[~inside].mean() < -0.5 < 0.5 < c[inside].mean()
    for q in ("c", "h"):
        order, r = rank_units(pattern_mask(text, QUOTES), s.get(q, 0))
        assert order[0] == TRACKER and r[TRACKER] > 0.85
        assert np.abs(r[order[1]]) < 0.5  # no other unit comes close
    # its memory: it holds for the whole quoted or unquoted stretch, so its span is far above the others'
    span = memory_span(s.get("f", 0))
    assert span[TRACKER] > 5 and span[TRACKER] > 3 * np.median(np.delete(span, TRACKER))


def test_quantized_values_are_within_half_a_step():
    a = np.random.default_rng(1).normal(size=(40, 6)).astype(np.float32)
    for bits in (8, 16):
        e = quantize(a, bits)
        step = (e["hi"] - e["lo"]) / ((1 << bits) - 1)
        back = dequantize(e, a.shape)
        assert np.abs(back - a).max() <= step / 2 + 1e-7
        assert back.min() == pytest.approx(a.min()) and back.max() == pytest.approx(a.max())
    flat = quantize(np.full((3, 2), 0.25), 8)
    assert np.all(dequantize(flat, (3, 2)) == 0.25)
    with pytest.raises(ValueError, match="bits must be 8 or 16, got 4"):
        quantize(a, 4)
