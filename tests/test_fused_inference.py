"""The fused kernel's inference entry against its recording forward, and the threaded tiles
against the reference.

Inference (no grad, nothing recorded: torch.ops.lstmkit.lstm_layer_infer) runs the same loops as
the recording forward (lstm_layer), keeping one step's pre-activations where the tiles project x_t
themselves and one reused chunk of the input projection otherwise; its outputs and final states
must be bit for bit the recording forward's, for every variant, on tiled and untiled steps, with
the input projection in the tiles or as a pass of its own. The tiled steps split hidden-unit blocks over threads: with two threads they must still
agree with the reference backend (not only with one thread).
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstmkit as lk
from conftest import assert_close
from test_fused import _require_kernel, fused_projection, tiled_mode  # noqa: F401 (fixtures)

# eval mode: zoneout is its expectation, dropouts are off; everything deterministic
_VARIANTS = [
    {}, dict(peephole=True), dict(coupled=True), dict(layer_norm=True), dict(zoneout=(0.2, 0.1)),
    dict(peephole=True, coupled=True, layer_norm=True, zoneout=0.1), dict(proj_size=3, peephole=True),
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    variant=st.sampled_from(_VARIANTS),
    layers=st.integers(1, 2),
    bidirectional=st.booleans(),
    T=st.integers(1, 7),
    B=st.integers(1, 6),
    with_lengths=st.booleans(),
    tiled=st.sampled_from(["auto", "off", "on"]),
    projection=st.sampled_from(["auto", "off"]),
    seed=st.integers(0, 2**16),
)
def test_inference_is_bit_equal_to_the_recording_forward(variant, layers, bidirectional, T, B, with_lengths, tiled,
                                                         projection, seed, tiled_mode, fused_projection):
    tiled_mode(tiled)
    fused_projection(projection)
    torch.manual_seed(seed)
    lstm = lk.LSTM(5, 6, layers, bidirectional=bidirectional, backend="fused", **variant).eval()
    x = torch.randn(T, B, 5)
    lengths = torch.randint(1, T + 1, (B,)) if with_lengths else None
    recorded = lstm(x, lengths=lengths, return_gates=True)
    with torch.no_grad():
        out, (h, c) = lstm(x, lengths=lengths)
    assert torch.equal(out, recorded.output)
    assert torch.equal(h, recorded.state[0]) and torch.equal(c, recorded.state[1])


@pytest.mark.parametrize("variant", [{}, dict(peephole=True, zoneout=0.1), dict(coupled=True), dict(layer_norm=True)],
                         ids=["plain", "peephole-zoneout", "coupled", "layer_norm"])
def test_two_threads_on_the_tiles_match_the_reference(variant, tiled_mode):
    """H = 64, tiles forced on in float64 (16 unit blocks of 4 lanes, split across both threads every
    step), so the comparison holds to float64's tolerance, LayerNorm's backward included."""
    _require_kernel()
    tiled_mode("on")
    torch.manual_seed(0)
    fused = lk.LSTM(16, 64, backend="fused", dtype=torch.float64, **variant).eval()
    reference = lk.LSTM(16, 64, backend="reference", dtype=torch.float64, **variant).eval()
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(9, 12, 16, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([9, 3, 7, 9, 1, 5, 9, 2, 8, 6, 4, 9])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out_f, (h_f, c_f) = fused(x, lengths=lengths)
        (gx_f,) = torch.autograd.grad(out_f.sum() + h_f.sum() + c_f.sum(), x)
        with torch.no_grad():
            inf = fused(x, lengths=lengths)[0]
    finally:
        torch.set_num_threads(before)
    out_r, (h_r, c_r) = reference(x, lengths=lengths)
    (gx_r,) = torch.autograd.grad(out_r.sum() + h_r.sum() + c_r.sum(), x)
    assert_close(out_f, out_r, torch.float64, "output")
    assert_close(h_f, h_r, torch.float64, "h_n")
    assert_close(c_f, c_r, torch.float64, "c_n")
    assert_close(gx_f, gx_r, torch.float64, "d input")
    assert torch.equal(inf, out_f)


@pytest.mark.parametrize("B", [1, 2])
def test_small_batches_with_large_weights_run_the_tiles(B):
    """B < 3 with W_hh past kTiledWeightsAnyBatch entries (one-step decoding's case) takes the tiled
    step by default; float32 against the reference, gradients included, inference bit for bit the
    recording forward, over several steps with a carried state."""
    ext = _require_kernel()
    H = 192  # W_hh: 768 × 192 = 147,456 entries
    if not ext.uses_tiled(False, B, 4 * H * H):
        pytest.skip("this build has no tiled steps (no AVX2)")
    assert not ext.uses_tiled(False, B, 4 * 32 * 32)
    torch.manual_seed(B)
    fused = lk.LSTM(24, H, backend="fused").eval()
    reference = lk.LSTM(24, H, backend="reference").eval()
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(4, B, 24, requires_grad=True)
    h0, c0 = torch.randn(1, B, H), torch.randn(1, B, H)
    out_f, (h_f, c_f) = fused(x, (h0, c0))
    grads_f = torch.autograd.grad(out_f.sum() + c_f.sum(), [x, *fused.parameters()])
    out_r, (h_r, c_r) = reference(x, (h0, c0))
    grads_r = torch.autograd.grad(out_r.sum() + c_r.sum(), [x, *reference.parameters()])
    assert_close(out_f, out_r, torch.float32, "output")
    assert_close(c_f, c_r, torch.float32, "c_n")
    for (name, _), g_f, g_r in zip([("input", None), *fused.named_parameters()], grads_f, grads_r):
        assert_close(g_f, g_r, torch.float32, f"d {name}")
    with torch.no_grad():
        out_i, (h_i, c_i) = fused(x, (h0, c0))
        step, state = [], (h0, c0)
        for t in range(4):  # one-step decoding: the same numbers a step at a time
            y, state = fused(x[t:t + 1], state)
            step.append(y)
    assert torch.equal(out_i, out_f) and torch.equal(h_i, h_f) and torch.equal(c_i, c_f)
    assert torch.equal(torch.cat(step), out_f)
