"""lk.mLSTM(..., return_gates=True): the recorded i, f, o, n, m, h are the values the computation
used — the same from the recurrent, parallel and chunkwise forms, consistent with the module's
weights and the stabilizer's definition, aligned with the input in both directions and zero past
each sequence's length."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lstmkit as lk
from conftest import assert_close

FIELDS = ("i", "f", "o", "n", "m", "h")


def _model(**kw):
    torch.manual_seed(0)
    return lk.mLSTM(3, 4, dtype=torch.float64, **kw)


def _state(m, B, gen):
    LD, NH, d = m.num_layers * m.num_directions, m.num_heads, m.head_size
    return (torch.randn(LD, B, NH, d, d, generator=gen, dtype=torch.float64),
            torch.randn(LD, B, NH, d, generator=gen, dtype=torch.float64).abs(),
            torch.randn(LD, B, NH, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("initial_state", [False, True])
@pytest.mark.parametrize("config", [dict(forget_gate="sigmoid"), dict(num_heads=2, forget_gate="exp", num_layers=2, bidirectional=True)])
def test_every_form_records_the_same_values(config, initial_state):
    m = _model(**config)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 3, generator=gen, dtype=torch.float64)
    hx = _state(m, 3, gen) if initial_state else None
    lengths = torch.tensor([8, 3, 6])
    results = {}
    for form in ("recurrent", "parallel", "chunkwise"):
        m.form, m.chunk_size = form, 3  # chunks of 3: boundaries inside every sequence
        results[form] = m(x, hx, lengths=lengths, return_gates=True)
    want = results["recurrent"]
    L, D = m.num_layers, m.num_directions
    assert want.gates.i.shape == (L, D, 8, 3, m.num_heads) and want.gates.o.shape == (L, D, 8, 3, 4)
    for form in ("parallel", "chunkwise"):
        for name, a, b in zip(FIELDS, results[form].gates, want.gates):
            assert_close(a, b, what=f"{form} {name}")
    out, state = m(x, hx, lengths=lengths)  # without return_gates: the same call
    assert_close(want.output, out, what="output")
    top = want.gates.layer(L - 1, 0).h
    assert_close(top, out[..., :4], what="h of the last layer's forward direction is its output")


def test_recorded_gates_follow_from_the_weights_and_the_stabilizer():
    m = _model(num_heads=2, bidirectional=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2, 3, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([6, 4])
    g = m(x, lengths=lengths, return_gates=True).gates
    H, NH = 4, 2
    for direction, sfx in enumerate(("_l0", "_l0_reverse")):
        proj = F.linear(x, getattr(m, "weight_ih" + sfx), getattr(m, "bias_ih" + sfx))  # (T, B, 4H + 2NH)
        i_pre, f_pre = proj[..., 4 * H:4 * H + NH], proj[..., 4 * H + NH:]
        o = torch.sigmoid(proj[..., 3 * H:4 * H])
        d = g.layer(0, direction)
        live = (torch.arange(6).unsqueeze(1) < lengths).unsqueeze(-1)  # (T, B, 1)
        # step t's values belong to input step t in both directions (the reverse one runs backwards)
        assert_close(d.o, torch.where(live, o, torch.zeros_like(o)), what=f"o, direction {direction}")
        assert_close(torch.where(live, d.i * torch.exp(d.m), torch.zeros_like(d.i)),
                     torch.where(live, torch.exp(i_pre), torch.zeros_like(i_pre)), what="i' exp(m) = exp(ĩ)")
        order = range(6) if direction == 0 else range(5, -1, -1)
        m_prev = torch.full((2, NH), float("-inf"), dtype=torch.float64)  # the empty memory's m
        for t in order:
            want_m = torch.maximum(F.logsigmoid(f_pre[t]) + m_prev, i_pre[t])
            want_f = torch.exp(F.logsigmoid(f_pre[t]) + m_prev - want_m)
            rows = live[t, :, 0]
            assert_close(d.m[t][rows], want_m[rows], what=f"m at step {t}")
            assert_close(d.f[t][rows], want_f[rows], what=f"f' at step {t}")
            m_prev = torch.where(rows.unsqueeze(-1), want_m, m_prev)
        assert (d.n[~live[..., 0]] == 0).all() and (d.n[live[..., 0]] > 0).all()


def test_gates_follow_the_layout():
    m = _model(num_heads=2, batch_first=True)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    g = m(x, return_gates=True).gates
    assert g.m.shape == (1, 1, 2, 5, 2) and g.h.shape == (1, 1, 2, 5, 4)
    unbatched = m(x[0], return_gates=True)
    assert unbatched.gates.f.shape == (1, 1, 5, 2)
    assert_close(unbatched.gates.n, g.n[:, :, 0], what="unbatched n")
    out, (C, n, mm), gates = m(x, return_gates=True)  # unpacks like sLSTM's result
    assert isinstance(gates, lk.MLSTMGates) and math.isfinite(float(gates.m.detach().sum()))
