"""The LSTM variants (reference backend) against an independent step-by-step formula in this file."""
from __future__ import annotations

import math

import pytest
import torch

import lstmkit as lk
from lstmkit.kernels import reference
from lstmkit.kernels.types import LSTMStepOptions
from conftest import assert_close

F64 = torch.float64
EPS = 1e-5


def sig(z):
    return 1 / (1 + torch.exp(-z))


def norm(z, w, b):
    mu = z.mean(-1, keepdim=True)
    var = ((z - mu) ** 2).mean(-1, keepdim=True)
    return (z - mu) / torch.sqrt(var + EPS) * w + b


def manual_layer(x, h, c, P, sfx="_l0", *, peephole=False, coupled=False, layer_norm=False, h_keep=None, zone_h=None, zone_c=None, reverse=False):
    """One layer, one direction, written from the papers' equations without lstmkit code."""
    H = c.shape[-1]
    W, R, bi, bh = P["weight_ih" + sfx], P["weight_hh" + sfx], P["bias_ih" + sfx], P["bias_hh" + sfx]
    outs = [None] * x.shape[0]
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    for t in steps:
        a = x[t] @ W.T
        r = (h if h_keep is None else h * h_keep) @ R.T
        if layer_norm:
            a = norm(a, P["ln_ih_weight" + sfx], P["ln_ih_bias" + sfx])
            r = norm(r, P["ln_hh_weight" + sfx], P["ln_hh_bias" + sfx])
        z = a + bi + r + bh
        if coupled:
            zi, zg, zo = z[:, :H], z[:, H:2 * H], z[:, 2 * H:]
        else:
            zi, zf, zg, zo = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
        if peephole:
            pw = P["weight_peephole" + sfx]
            zi = zi + pw[0] * c
            if not coupled:
                zf = zf + pw[1] * c
        i = sig(zi)
        f = 1 - i if coupled else sig(zf)
        g = torch.tanh(zg)
        c_new = f * c + i * g
        if peephole:
            zo = zo + P["weight_peephole" + sfx][-1] * c_new
        o = sig(zo)
        h_new = o * torch.tanh(norm(c_new, P["ln_c_weight" + sfx], P["ln_c_bias" + sfx]) if layer_norm else c_new)
        if zone_h is not None:
            h_new = zone_h[t] * h + (1 - zone_h[t]) * h_new
        if zone_c is not None:
            c_new = zone_c[t] * c + (1 - zone_c[t]) * c_new
        h, c = h_new, c_new
        outs[t] = h
    return torch.stack(outs), h, c


def randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.8, 0.8)  # LayerNorm gains and peepholes away from their 1 / small inits
    return module


VARIANTS = [dict(peephole=True), dict(coupled=True), dict(layer_norm=True), dict(peephole=True, coupled=True),
            dict(peephole=True, layer_norm=True), dict(coupled=True, layer_norm=True, peephole=True)]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: "+".join(kw))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_variant_matches_the_formula(kw, bidirectional):
    torch.manual_seed(0)
    lstm = randomize(lk.LSTM(3, 4, bidirectional=bidirectional, backend="reference", **kw).double())
    x = torch.randn(5, 2, 3, dtype=F64)
    h0, c0 = torch.randn(1 + bidirectional, 2, 4, dtype=F64), torch.randn(1 + bidirectional, 2, 4, dtype=F64)
    out, (h_n, c_n) = lstm(x, (h0, c0))
    P = dict(lstm.named_parameters())
    manual = [manual_layer(x, h0[d], c0[d], P, "_l0" + ("_reverse" if d else ""), reverse=bool(d), **kw) for d in range(1 + bidirectional)]
    assert_close(out, torch.cat([m[0] for m in manual], -1), F64, "output")
    assert_close(h_n, torch.stack([m[1] for m in manual]), F64, "h_n")
    assert_close(c_n, torch.stack([m[2] for m in manual]), F64, "c_n")


def test_peephole_golden():
    """One unit, constant weights: the peepholes are the only path from c to the gates."""
    lstm = lk.LSTM(1, 1, peephole=True, backend="reference").double()
    with torch.no_grad():
        lstm.weight_ih_l0.fill_(0.0)
        lstm.weight_hh_l0.fill_(0.0)
        lstm.bias_ih_l0.copy_(torch.tensor([0.0, 0.0, 2.0, 0.0], dtype=F64))  # g = tanh(2) always
        lstm.bias_hh_l0.zero_()
        lstm.weight_peephole_l0.copy_(torch.tensor([[0.5], [-0.5], [1.0]], dtype=F64))
    _, (h, c) = lstm(torch.zeros(2, 1, 1, dtype=F64))
    s = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    g = math.tanh(2.0)
    c1 = 0.5 * g  # i = f = σ(0) at c0 = 0
    c2 = s(-0.5 * c1) * c1 + s(0.5 * c1) * g
    h2 = s(c2) * math.tanh(c2)
    assert c.item() == pytest.approx(c2, abs=1e-14) and h.item() == pytest.approx(h2, abs=1e-14)


def test_coupled_parameters_and_forget_bias():
    lstm = lk.LSTM(3, 4, coupled=True, forget_bias=2.0)
    assert lstm.weight_ih_l0.shape == (12, 3) and lstm.weight_hh_l0.shape == (12, 4)
    assert torch.all(lstm.bias_ih_l0[:4] == -2.0) and torch.all(lstm.bias_hh_l0[:4] == 0)
    res = lstm(torch.zeros(1, 1, 3), return_gates=True)
    torch.testing.assert_close(res.gates.f, 1 - res.gates.i)
    torch.testing.assert_close(res.gates.f[0, 0, 0, 0], torch.sigmoid(torch.tensor([2.0, 2.0, 2.0, 2.0])))


def test_state_dict_names_of_the_variants():
    lstm = lk.LSTM(3, 4, bidirectional=True, peephole=True, layer_norm=True)
    names = set(lstm.state_dict())
    for sfx in ("_l0", "_l0_reverse"):
        assert {f"weight_peephole{sfx}", f"ln_ih_weight{sfx}", f"ln_ih_bias{sfx}", f"ln_hh_weight{sfx}",
                f"ln_hh_bias{sfx}", f"ln_c_weight{sfx}", f"ln_c_bias{sfx}"} <= names
    assert lstm.weight_peephole_l0.shape == (3, 4) and lstm.ln_ih_weight_l0.shape == (16,) and lstm.ln_c_bias_l0.shape == (4,)
    assert torch.all(lstm.ln_c_weight_l0 == 1) and torch.all(lstm.ln_hh_bias_l0 == 0)
    # a plain LSTM's weights load into a peephole one when the extras are left out on purpose
    missing = lstm.load_state_dict(lk.LSTM(3, 4, bidirectional=True).state_dict(), strict=False).missing_keys
    assert set(missing) == names - set(lk.LSTM(3, 4, bidirectional=True).state_dict())


@pytest.mark.parametrize("coupled", [False, True])
def test_kernel_with_injected_masks_matches_the_formula(coupled):
    """Zoneout and recurrent-dropout masks given to the kernel act exactly as the papers say."""
    torch.manual_seed(0)
    lstm = randomize(lk.LSTM(3, 4, coupled=coupled, peephole=True, backend="reference").double())
    P = dict(lstm.named_parameters())
    x = torch.randn(6, 2, 3, dtype=F64)
    h0, c0 = torch.randn(2, 4, dtype=F64), torch.randn(2, 4, dtype=F64)
    zone_h = torch.bernoulli(torch.full((6, 2, 4), 0.3, dtype=F64))
    zone_c = torch.bernoulli(torch.full((6, 2, 4), 0.6, dtype=F64))
    h_keep = torch.bernoulli(torch.full((2, 4), 0.7, dtype=F64)) / 0.7
    params = lstm._layer_params()[0][0]
    opts = LSTMStepOptions(coupled=coupled, h_keep=h_keep, zone_h=zone_h, zone_c=zone_c)
    out, (h, c), _ = reference.lstm_layer(x, h0, c0, params, opts=opts)
    m_out, m_h, m_c = manual_layer(x, h0, c0, P, peephole=True, coupled=coupled, h_keep=h_keep, zone_h=zone_h, zone_c=zone_c)
    assert_close(out, m_out, F64, "output")
    assert_close(c, m_c, F64, "c_n")


def test_zoneout_eval_is_its_expectation_and_deterministic():
    torch.manual_seed(0)
    lstm = randomize(lk.LSTM(3, 4, zoneout=(0.25, 0.5), backend="reference").double()).eval()
    x = torch.randn(5, 2, 3, dtype=F64)
    a, b = lstm(x), lstm(x)
    assert torch.equal(a[0], b[0])
    P = dict(lstm.named_parameters())
    zh, zc = torch.full((5, 2, 4), 0.5, dtype=F64), torch.full((5, 2, 4), 0.25, dtype=F64)
    m_out, _, m_c = manual_layer(x, torch.zeros(2, 4, dtype=F64), torch.zeros(2, 4, dtype=F64), P, zone_h=zh, zone_c=zc)
    assert_close(a[0], m_out, F64, "eval output")
    assert_close(a[1][1][0], m_c, F64, "eval c_n")


def test_zoneout_of_one_freezes_the_state_in_training():
    lstm = lk.LSTM(3, 4, zoneout=1.0).train()
    h0, c0 = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    _, (h, c) = lstm(torch.randn(7, 2, 3), (h0, c0))
    torch.testing.assert_close(h, h0)
    torch.testing.assert_close(c, c0)


@pytest.mark.parametrize("kw", [dict(zoneout=0.3), dict(recurrent_dropout=0.4), dict(input_dropout=0.4), dict(weight_drop=0.4)], ids=lambda kw: next(iter(kw)))
def test_stochastic_variants_seeded_in_training_identity_or_expectation_in_eval(kw):
    torch.manual_seed(0)
    lstm = lk.LSTM(3, 6, num_layers=2, **kw, backend="reference")
    plain = lk.LSTM(3, 6, num_layers=2, backend="reference")
    plain.load_state_dict(lstm.state_dict())
    x = torch.randn(5, 4, 3)
    torch.manual_seed(1)
    a = lstm(x)[0]
    torch.manual_seed(1)
    b = lstm(x)[0]
    assert torch.equal(a, b), "the same seed gives the same masks"
    assert not torch.equal(a, lstm(x)[0]), "a new draw gives new masks"
    assert not torch.allclose(a, plain(x)[0])
    lstm.eval(), plain.eval()
    if "zoneout" not in kw:
        torch.testing.assert_close(lstm(x)[0], plain(x)[0], msg="dropout variants are identity in eval")
    assert torch.equal(lstm(x)[0], lstm(x)[0]), "eval is deterministic"


def test_recurrent_dropout_draws_one_scaled_mask_per_sequence():
    torch.manual_seed(3)
    lstm = lk.LSTM(2, 8, recurrent_dropout=0.5, backend="reference").train()
    opts, _ = lstm._step_options(4, 1, torch.zeros(1))
    keep = opts[0][0].h_keep
    assert keep.shape == (1, 8) and set(keep.unique().tolist()) <= {0.0, 2.0}


def test_combination_layer_norm_zoneout_bidirectional_lengths_gates():
    torch.manual_seed(0)
    lstm = lk.LSTM(3, 4, num_layers=2, bidirectional=True, layer_norm=True, zoneout=0.1, peephole=True, backend="reference").double().eval()
    x = torch.randn(6, 3, 3, dtype=F64)
    res = lstm(x, lengths=[6, 2, 4], return_gates=True)
    alone = lstm(x[:2, 1:2])
    assert_close(res.output[:2, 1], alone[0][:, 0], F64, "padded == alone")
    assert_close(res.state[0][:, 1], alone[1][0][:, 0], F64, "h_n padded == alone")
    assert res.gates.c.shape == (2, 2, 6, 3, 4)


@pytest.mark.parametrize("kw", VARIANTS + [dict(zoneout=0.3)], ids=lambda kw: "+".join(kw))
def test_variant_gradcheck(kw):
    torch.manual_seed(0)
    lstm = randomize(lk.LSTM(2, 3, bidirectional=True, backend="reference", **kw).double()).eval()
    x = torch.randn(3, 2, 2, dtype=F64, requires_grad=True)
    names = [n for n, _ in lstm.named_parameters()]

    def f(x, *ps):
        with torch.nn.utils.stateless._reparametrize_module(lstm, dict(zip(names, ps))):
            return lstm(x, lengths=[3, 2])[0]

    assert torch.autograd.gradcheck(f, (x, *lstm.parameters()), eps=1e-6, atol=1e-7)


def test_native_refuses_variants_with_the_reason():
    with pytest.raises(ValueError, match=r"backend 'native' cannot run this configuration: torch's kernels have no peephole, layer_norm"):
        lk.LSTM(3, 4, peephole=True, layer_norm=True, backend="native")(torch.randn(2, 1, 3))


def test_weight_drop_and_dropout_in_eval_run_anywhere():
    lstm = lk.LSTM(3, 4, weight_drop=0.5, recurrent_dropout=0.3, input_dropout=0.2, backend="native").eval()
    lstm(torch.randn(2, 1, 3))


@pytest.mark.parametrize("kw,match", [
    (dict(zoneout=1.5), r"zoneout \(cell\) must be a number in \[0, 1\], got 1.5"),
    (dict(zoneout=(0.1, 0.2, 0.3)), r"zoneout must be a probability or a pair"),
    (dict(recurrent_dropout=1.0), r"recurrent_dropout must be below 1"),
    (dict(layer_norm_eps=0), r"layer_norm_eps must be a positive number, got 0"),
])
def test_bad_variant_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        lk.LSTM(3, 4, **kw)


@pytest.mark.parametrize("kw", VARIANTS + [dict(zoneout=(0.2, 0.4))], ids=lambda kw: "+".join(kw))
def test_cell_variants_step_like_the_layer(kw):
    """lk.LSTMCell with a variant, stepped by hand, equals lk.LSTM with the same variant and weights."""
    torch.manual_seed(0)
    lstm = randomize(lk.LSTM(3, 4, backend="reference", **kw).double()).eval()
    cell = lk.LSTMCell(3, 4, **kw).double().eval()
    with torch.no_grad():
        for name, p in cell.named_parameters():
            p.copy_(getattr(lstm, name + "_l0"))  # same names as lk.LSTM without the layer suffix
    x = torch.randn(5, 2, 3, dtype=F64)
    out, (h_n, c_n) = lstm(x)
    h = c = torch.zeros(2, 4, dtype=F64)
    for t in range(5):
        h, c = cell(x[t], (h, c))
        assert_close(h, out[t], F64, f"step {t}")
    assert_close(c, c_n[0], F64, "c")


@pytest.mark.parametrize("z", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("engine", ["kernel", "torch-ops"])
def test_zoneout_training_masks_are_bool_bernoulli_z(z, engine, monkeypatch):
    """The module's zoneout samples: bool, P(keep) = z (to 1/65536), fresh per call, fixed by the seed."""
    from lstmkit.kernels import fused
    from lstmkit.kernels.masks import zoneout_mask as _zone_mask

    if engine == "kernel":
        if fused.load_extension() is None:
            pytest.skip("the fused kernel is not built here")
    else:
        monkeypatch.setattr(fused, "loaded_extension", lambda: None)
    torch.manual_seed(5)
    a = _zone_mask((50, 40, 30), z, torch.empty(0))  # 60 000 draws: 5 sigma < 0.011
    assert a.dtype == torch.bool and a.shape == (50, 40, 30)
    assert abs(a.float().mean().item() - z) < 0.011
    # each of the four 16-bit lanes of a 64-bit draw is uniform on its own
    lanes = a.reshape(-1)[: 60000 // 4 * 4].view(-1, 4).float().mean(0)
    assert (lanes - z).abs().max().item() < 0.02, lanes
    b = _zone_mask((50, 40, 30), z, torch.empty(0))
    assert not torch.equal(a, b)
    torch.manual_seed(5)
    assert torch.equal(_zone_mask((50, 40, 30), z, torch.empty(0)), a)
    assert _zone_mask((3, 2, 5), 1.0, torch.empty(0)).all()


def test_zoneout_masks_are_the_same_from_the_kernel_and_from_torch_ops(monkeypatch):
    """The kernel's parallel sampler and the torch-op fallback compute the same splitmix64 masks,
    whatever the thread count (entries not a multiple of 4 included)."""
    from lstmkit.kernels import fused, masks

    if fused.load_extension() is None:
        pytest.skip("the fused kernel is not built here")
    before = torch.get_num_threads()
    got = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(11)
            got.append(masks.zoneout_mask((37, 5, 7), 0.3, torch.empty(0)))  # 1295 entries
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(fused, "loaded_extension", lambda: None)
    torch.manual_seed(11)
    want = masks.zoneout_mask((37, 5, 7), 0.3, torch.empty(0))
    assert torch.equal(got[0], want) and torch.equal(got[1], want)
    # splitmix64 itself, against its definition in Python integers
    seed, mask64 = 2**62 + 12345, 2**64 - 1
    for i, value in enumerate(masks.splitmix64(3, seed).tolist()):
        x = ((seed + i) * 0x9E3779B97F4A7C15) & mask64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask64
        x ^= x >> 31
        assert value & mask64 == x


def test_zoneout_probability_outside_0_1_is_refused():
    from lstmkit.kernels.masks import zoneout_mask

    with pytest.raises(ValueError, match=r"zoneout probability must be in \[0, 1\], got 1.5"):
        zoneout_mask((2, 2), 1.5, torch.empty(0))
