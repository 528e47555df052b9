"""Row parts: at two or more threads a tiled forward (and backward) can give each thread its own
batch rows for every step instead of splitting each step's hidden units, with no join between
steps. A register tile builds every entry the same way whichever rows it holds, so outputs,
states, recorded gates and every gradient are bit for bit those of the unit split, for every
variant, with lengths, in both directions, and in inference. (LayerNorm keeps the unit split.)
"""
from __future__ import annotations

import pytest
import torch

import lstmkit as lk
from conftest import assert_close
from test_fused import _require_kernel, concurrency, grad_tiles, row_split  # noqa: F401 (fixtures)

_VARIANTS = [
    {}, dict(peephole=True, zoneout=(0.2, 0.1)), dict(coupled=True), dict(layer_norm=True),
    dict(recurrent_dropout=0.3), dict(peephole=True, coupled=True, layer_norm=True, zoneout=0.1, recurrent_dropout=0.2),
]


@pytest.fixture
def threads():
    """torch.set_num_threads for one test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _run(lstm, x, lengths, seed):
    """Everything a training step and an inference call produce, from the same RNG state."""
    torch.manual_seed(seed)
    xs = x.clone().requires_grad_()
    res = lstm(xs, lengths=lengths, return_gates=True)
    loss = (res.output ** 2).sum() + res.state[1].sum() + res.gates.o.sum()
    grads = torch.autograd.grad(loss, [xs, *lstm.parameters()])
    torch.manual_seed(seed)
    out, (h, c) = lstm(x, lengths=lengths)  # the plain call: the whole-stack operators where they apply
    (out.sum() + c.sum()).backward()
    plain_grads = [p.grad.clone() for p in lstm.parameters()]
    lstm.zero_grad()
    with torch.no_grad():
        torch.manual_seed(seed)
        inferred, (hi, ci) = lstm(x, lengths=lengths)
    return [res.output, *res.state, *res.gates, *grads, out, h, c, *plain_grads, inferred, hi, ci]


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("variant", _VARIANTS, ids=lambda kw: "+".join(kw) or "plain")
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
def test_row_parts_are_bit_equal_to_the_unit_split(variant, bidirectional, n_threads, row_split, threads, concurrency):
    ext = _require_kernel()
    threads(n_threads)
    concurrency("off")  # the stack's concurrent layers and directions would each run on one thread
    torch.manual_seed(11)
    lstm = lk.LSTM(12, 24, 2, bidirectional=bidirectional, backend="fused", **variant)
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            if name.startswith("weight_peephole") or name.startswith("ln_"):  # not the identity init
                p.add_(torch.empty_like(p).uniform_(-0.5, 0.5))
    B = 19  # row parts of 10 and 9: a full AVX-512 tile and a remainder in each
    x = torch.randn(7, B, 12)
    lengths = torch.randint(1, 8, (B,))
    results = []
    for mode in ("off", "on"):
        row_split(mode)
        runs = ext.row_split_runs()
        results.append(_run(lstm, x, lengths, seed=5))
        ran = ext.row_split_runs() - runs
        # LayerNorm's forward splits units (its row statistics follow the product), and its backward
        # keeps per-thread sums of the parameter gradients in step order: it never runs row parts.
        expected = mode == "on" and not variant.get("layer_norm")
        assert (ran > 0) == expected, f"row split {mode}: {ran} loops ran as row parts"
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_auto_splits_rows_only_where_each_thread_gets_a_tile_and_the_weights_are_small(row_split, threads):
    ext = _require_kernel()
    threads(2)
    row_split("auto")

    def ran(B, H, proj_size=0):
        lstm = lk.LSTM(16, H, proj_size=proj_size, backend="fused")
        before = ext.row_split_runs()
        with torch.no_grad():
            lstm(torch.randn(3, B, 16))
        return ext.row_split_runs() - before > 0

    tile = 8 if ext.uses_avx512() else 3
    assert ran(2 * tile, 32)
    assert not ran(2 * tile - 1, 32), "one part would have less than a full tile"
    assert not ran(2 * tile, 32, proj_size=8), "a projection needs all units of a row after each step"
    assert not ran(2 * tile, 512), "(16 + 512) x 2048 float32 weights are more than 4 MB"
    threads(1)
    assert not ran(4 * tile, 32), "one thread has nothing to split"


def _grads(lstm, x, lengths):
    xs = x.clone().requires_grad_()
    out, (h, c) = lstm(xs, lengths=lengths)
    (out.square().sum() + c.sum()).backward()
    grads = {"input": xs.grad, **{n: p.grad.clone() for n, p in lstm.named_parameters()}}
    lstm.zero_grad()
    return grads


@pytest.mark.parametrize("proj_size", [0, 5])
def test_tiled_gradients_match_blas_and_do_not_depend_on_the_threads(proj_size, grad_tiles, threads):
    """dX = dG W_ih and dW += dGᵀ X, dGᵀ h_{t-1} on the tiles agree with MKL's to float32's precision;
    each entry is one chain of multiply-adds in row order, so one and two threads give the very same bits."""
    _require_kernel()
    torch.manual_seed(4)
    lstm = lk.LSTM(20, 24, 2, proj_size=proj_size, backend="fused")
    x = torch.randn(9, 16, 20)
    lengths = torch.randint(1, 10, (16,))
    results = {}
    for mode, n in (("off", 1), ("auto", 1), ("auto", 2)):
        grad_tiles(mode)
        threads(n)
        results[mode, n] = _grads(lstm, x, lengths)
    for name, want in results["off", 1].items():
        assert_close(results["auto", 1][name], want, torch.float32, f"grad {name}, tiles vs BLAS")
    for name in ("input", "weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"):
        assert torch.equal(results["auto", 1][name], results["auto", 2][name]), name


def test_more_parts_than_rows_need_leaves_the_last_parts_empty(row_split, threads, concurrency):
    """Four threads over 5 rows: ceil(5 / 4) = 2 rows a part, so the fourth part has none; it must
    do nothing rather than run rows past the batch."""
    ext = _require_kernel()
    threads(4)
    concurrency("off")
    torch.manual_seed(6)
    lstm = lk.LSTM(6, 16, backend="fused", zoneout=0.2)  # bool zoneout masks: each part widens its own rows
    x = torch.randn(5, 5, 6)
    lengths = torch.tensor([5, 3, 1, 4, 2])
    results = []
    for mode in ("off", "on"):
        row_split(mode)
        before = ext.row_split_runs()
        results.append(_run(lstm, x, lengths, seed=8))
        assert (ext.row_split_runs() > before) == (mode == "on")
    for a, b in zip(*results):
        assert torch.equal(a, b)
