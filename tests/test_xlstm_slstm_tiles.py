"""sLSTM's fused kernel on each of its step paths, forced: the register tiles over the head-wise
packed weights and the per-head BLAS steps, each ≡ the reference loop (outputs, states, every
gradient), at head sizes that fill, straddle and split the tiles' unit blocks, on one and two
threads; gradcheck of the operator with heads on both paths."""
from __future__ import annotations

import pytest
import torch

import lstmkit as lk
from conftest import assert_close
from lstmkit.xlstm import slstm_fused

_OPS = None


@pytest.fixture(autouse=True)
def ops():
    global _OPS
    assert slstm_fused.load_extension(), "the fused sLSTM kernel must build here (CI has a compiler)"
    _OPS = torch.ops.lstmkit_xlstm
    yield _OPS
    _OPS.set_tiled(0)


def _values_and_grads(m, backend, x, hx, lengths):
    m.backend = backend
    res = m(x, hx, lengths=lengths, return_gates=True)
    values = [res[0], *res[1], *res.gates]
    gen = torch.Generator().manual_seed(7)
    loss = sum((v * torch.randn(v.shape, generator=gen, dtype=v.dtype)).sum() for v in values)
    grads = torch.autograd.grad(loss, [x, *hx, *m.parameters()])
    return [v.detach() for v in values] + list(grads)


def _check(mode, dtype, T, B, H, heads, bidir=True, forget_gate="sigmoid", seed=0):
    _OPS.set_tiled(mode)
    torch.manual_seed(seed)
    m = lk.sLSTM(3, H, num_heads=heads, bidirectional=bidir, forget_gate=forget_gate, dtype=dtype)
    D = 2 if bidir else 1
    x = torch.randn(T, B, 3, dtype=dtype, requires_grad=True)
    hx = [torch.randn(D, B, H, dtype=dtype) for _ in range(4)]
    hx[2] = hx[2].abs() * (torch.rand(D, B, H) > 0.3).to(dtype)  # some empty (n = 0) memories
    hx = tuple(s.requires_grad_() for s in hx)
    lengths = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(seed))
    got = _values_and_grads(m, "fused", x, hx, lengths)
    want = _values_and_grads(m, "reference", x, hx, lengths)
    for k, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, dtype, f"mode {mode}, value {k}")
    m.backend = "fused"
    with torch.no_grad():  # inference takes the same path: bit for bit the recording forward's values
        out, state = m(x, hx, lengths=lengths)
    for k, v in enumerate([out, *state]):
        torch.testing.assert_close(v, got[k], rtol=0, atol=0)


# (H, heads): one head; dh = 4 (several heads per unit block); dh = 20 (blocks straddle heads);
# dh = 16 (whole blocks per head); H = 37 (a partial last block).
@pytest.mark.parametrize("H, heads", [(8, 1), (12, 3), (40, 2), (32, 2), (37, 1)])
@pytest.mark.parametrize("mode", [1, -1], ids=["tiled", "blas"])
def test_each_path_matches_reference(mode, H, heads):
    # B = 7: two full row tiles and a tile of one row; float64 at 1e-10 pins the products exactly.
    _check(mode, torch.float64, T=5, B=7, H=H, heads=heads, forget_gate="exp" if heads > 1 else "sigmoid")


@pytest.mark.parametrize("B", [1, 2, 5])
def test_tiled_float32_row_tiles(B):
    _check(1, torch.float32, T=6, B=B, H=24, heads=3, bidir=False, seed=B)


def test_two_threads_match_reference():
    """Large enough that the tiles' unit blocks and the passes over rows split across two threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for mode in (1, -1):
            _check(mode, torch.float64, T=4, B=9, H=128, heads=2, bidir=False, seed=3)
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("mode", [1, -1], ids=["tiled", "blas"])
def test_gradcheck_with_heads_float64(mode):
    _OPS.set_tiled(mode)
    torch.manual_seed(0)
    T, B, I, H, dh = 4, 4, 2, 6, 3
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    w_ih = torch.randn(4 * H, I, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(4 * H, dh, dtype=torch.float64) * 0.5).requires_grad_()
    h0, c0, m0 = (torch.randn(B, H, dtype=torch.float64, requires_grad=True) for _ in range(3))
    n0 = (torch.rand(B, H, dtype=torch.float64) + 0.5).requires_grad_()
    lengths = torch.tensor([4, 1, 3, 4])

    def f(x, w_ih, w, h0, c0, n0, m0):  # without a bias
        return _OPS.slstm_forward(x, w_ih, None, w, h0, c0, n0, m0, lengths, True, False)

    assert torch.autograd.gradcheck(f, (x, w_ih, w, h0, c0, n0, m0))


def test_tile_knob():
    _OPS.set_tiled(1)
    assert _OPS.uses_tiled(True, 1) and _OPS.uses_tiled(False, 1)
    _OPS.set_tiled(-1)
    assert not _OPS.uses_tiled(False, 64)
    _OPS.set_tiled(0)
    assert not _OPS.uses_tiled(True, 64)  # float64 never tiles by default (its tiles were not measured faster)
    assert not _OPS.uses_tiled(False, 2)  # nor batches below one row tile
    with pytest.raises(RuntimeError, match="mode must be -1 .* got 2"):
        _OPS.set_tiled(2)
