"""lk.LSTM under PyTorch 2: torch.compile, torch.export, AOTInductor, meta tensors, torch.func.

Each row of the compatibility table (README, "PyTorch 2") is one test here, for lk.LSTM and for
torch.nn.LSTM beside it: what torch.nn.LSTM cannot do today (torch 2.13) is asserted too, so a
table cell that goes stale fails a test. Outputs and gradients of every traced form are compared
with eager, bit for bit where the same kernel runs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.export import Dim
from torch.func import functional_call, grad, vmap
from torch.library import opcheck

import lstmkit as lk
from lstmkit.kernels import fused
from test_fused import _require_kernel, tiled_mode  # noqa: F401 (fixture)


@pytest.fixture(autouse=True)
def _kernel():
    _require_kernel()
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


class TextModel(nn.Module):
    """The text app's shape: embedding → lk.LSTM (2 layers) → linear head."""

    def __init__(self, lstm_cls=lk.LSTM, vocab=40, emb=16, hidden=32, **kw):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.lstm = lstm_cls(emb, hidden, num_layers=2, batch_first=True, **kw)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        out, state = self.lstm(self.embedding(ids), state)
        return self.head(out), state


# --- torch.compile --------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: lk.LSTM(6, 8, num_layers=2, bidirectional=True),
    lambda: lk.LSTM(6, 8, proj_size=5, peephole=True, layer_norm=True),
    lambda: lk.LSTM(6, 8, coupled=True, zoneout=0.1, recurrent_dropout=0.2).eval(),
], ids=["2-layer-bidirectional", "proj-peephole-layernorm", "coupled-zoneout-eval"])
def test_compile_fullgraph_matches_eager_forward_and_gradients(make):
    torch.manual_seed(0)
    m = make()
    x = torch.randn(7, 3, 6, requires_grad=True)
    lengths = torch.tensor([7, 2, 5])
    explanation = torch._dynamo.explain(m)(x, lengths=lengths)
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    out_c, (h_c, c_c) = compiled(x, lengths=lengths)
    (out_c.sum() + h_c.sum() + c_c.sum()).backward()
    g_c, gx_c = _grads(m), x.grad.clone()
    m.zero_grad()
    x.grad = None
    out_e, (h_e, c_e) = m(x, lengths=lengths)
    (out_e.sum() + h_e.sum() + c_e.sum()).backward()
    assert torch.equal(out_c, out_e) and torch.equal(h_c, h_e) and torch.equal(c_c, c_e)
    assert torch.equal(gx_c, x.grad)
    for k, g in _grads(m).items():
        assert torch.equal(g_c[k], g), k


def test_compile_return_gates_and_no_grad_inference():
    torch.manual_seed(0)
    m = lk.LSTM(5, 6, num_layers=2, batch_first=True)
    x = torch.randn(3, 9, 5)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    res_c, res_e = compiled(x, return_gates=True), m(x, return_gates=True)
    for a, b in zip(res_c.gates, res_e.gates):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(compiled(x)[0], m(x)[0])


def test_compile_cell_and_rnn_have_no_graph_break():
    torch.manual_seed(0)
    cell, rnn = lk.LSTMCell(4, 6, layer_norm=True), lk.RNN(4, 6, num_layers=2)
    x = torch.randn(3, 4)
    for module, args in ((cell, (x,)), (rnn, (torch.randn(5, 3, 4),))):
        explanation = torch._dynamo.explain(module)(*args)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
        got, want = compiled(*args), module(*args)
        assert torch.allclose(got[0], want[0], atol=1e-6)


def test_inductor_compiles_a_text_model_training_step_and_decoding_step():
    """The real compiler (inductor) on the text app's shape: a training step, then one-step decoding."""
    torch.manual_seed(0)
    model = TextModel()
    ids = torch.randint(0, 40, (4, 12))
    compiled = torch.compile(model, fullgraph=True)
    loss_c = compiled(ids)[0].logsumexp(-1).mean()
    loss_c.backward()
    g_c = _grads(model)
    model.zero_grad()
    loss_e = model(ids)[0].logsumexp(-1).mean()
    loss_e.backward()
    assert torch.allclose(loss_c, loss_e, atol=1e-6)
    for k, g in _grads(model).items():
        assert torch.allclose(g_c[k], g, atol=1e-5), k
    with torch.no_grad():
        state = None
        for t in range(3):
            logits_c, state_c = compiled(ids[:, t:t + 1], state)
            logits_e, state = model(ids[:, t:t + 1], state)
            assert torch.allclose(logits_c, logits_e, atol=1e-5)


def test_compiled_lengths_out_of_range_are_still_refused():
    m = lk.LSTM(3, 4)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[1, 5\]"):
        compiled(torch.randn(5, 2, 3), lengths=torch.tensor([5, 9]))


def test_torch_nn_lstm_cannot_compile_fullgraph():
    """The table's torch.nn.LSTM cell (torch 2.13): dynamo refuses to trace it."""
    with pytest.raises(Exception, match="RNN, GRU, or LSTM"):
        torch.compile(nn.LSTM(4, 5), fullgraph=True, backend="aot_eager")(torch.randn(3, 2, 4))


# --- torch.export and AOTInductor -----------------------------------------------------------

class WithLengths(nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x, lengths):
        return self.lstm(x, lengths=lengths)


_T, _B = Dim("T", min=2, max=4096), Dim("B", min=2, max=1024)


def test_export_with_dynamic_length_batch_and_lengths_runs_at_other_sizes():
    torch.manual_seed(0)
    model = WithLengths(lk.LSTM(6, 8, num_layers=2, bidirectional=True, layer_norm=True)).eval()
    x, lengths = torch.randn(10, 3, 6), torch.tensor([10, 4, 7])
    with torch.no_grad():
        ep = torch.export.export(model, (x, lengths), dynamic_shapes=({0: _T, 1: _B}, {0: _B}))
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert "lstmkit.lstm_layer_infer.default" in ops
        for T, lens in ((23, [23, 1, 9, 17, 23]), (2, [2, 1])):
            x2, l2 = torch.randn(T, len(lens), 6), torch.tensor(lens)
            got, want = ep.module()(x2, l2), model(x2, l2)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1][0], want[1][0]) and torch.equal(got[1][1], want[1][1])


def test_export_for_training_keeps_the_hand_written_backward():
    torch.manual_seed(0)
    m = lk.LSTM(4, 5, peephole=True)
    x = torch.randn(6, 2, 4)
    ep = torch.export.export(m, (x,), dynamic_shapes=({0: _T, 1: _B},))
    assert "lstmkit.lstm_layer.default" in {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    x2 = torch.randn(11, 3, 4)
    out = ep.module()(x2)[0]
    assert torch.equal(out, m(x2)[0])


def test_torch_nn_lstm_export_cannot_keep_the_length_dynamic():
    with pytest.raises(Exception, match="Constraints violated"):
        torch.export.export(nn.LSTM(4, 5), (torch.randn(6, 2, 4),), dynamic_shapes=({0: _T, 1: _B},))


def test_aoti_package_runs_in_a_fresh_process_without_lstmkit(tmp_path):
    """AOTInductor: the package needs torch and the kernel's library loaded, no lstmkit Python."""
    torch.manual_seed(0)
    m = lk.LSTM(6, 8, num_layers=2).eval()
    with torch.no_grad():
        ep = torch.export.export(m, (torch.randn(9, 3, 6),), dynamic_shapes=({0: _T, 1: _B},))
    package = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "lstm.pt2"))
    x = torch.randn(17, 4, 6)
    with torch.no_grad():
        want = m(x)
    torch.save({"x": x, "out": want[0], "h": want[1][0]}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        torch.ops.load_library({fused.library_path()!r})
        run = torch._inductor.aoti_load_package({package!r})
        io = torch.load({str(tmp_path / "io.pt")!r})
        out, (h, c) = run(io["x"])
        assert torch.equal(out, io["out"]) and torch.equal(h, io["h"]), (out - io["out"]).abs().max()
        assert not any(m.startswith("lstmkit") for m in sys.modules), "lstmkit was imported"
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


# --- meta tensors -----------------------------------------------------------------------------

def test_meta_construction_forward_gates_and_backward():
    m = lk.LSTM(16, 32, num_layers=2, bidirectional=True, proj_size=8, layer_norm=True, device="meta")
    x = torch.randn(20, 4, 16, device="meta", requires_grad=True)
    res = m(x, return_gates=True)
    assert res.output.shape == (20, 4, 16) and res.output.device.type == "meta"
    assert res.state[0].shape == (4, 4, 8) and res.state[1].shape == (4, 4, 32)
    assert res.gates.f.shape == (2, 2, 20, 4, 32)
    res.output.sum().backward()
    assert x.grad.shape == x.shape and m.weight_hh_l1_reverse.grad.shape == m.weight_hh_l1_reverse.shape


# --- torch.func -------------------------------------------------------------------------------

def test_func_grad_over_functional_call_equals_autograd():
    torch.manual_seed(0)
    m = lk.LSTM(5, 6, num_layers=2, bidirectional=True, peephole=True)
    params = {k: v.detach() for k, v in m.named_parameters()}
    x = torch.randn(7, 3, 5)

    def loss(p, x):
        return functional_call(m, p, (x,))[0].pow(2).sum()

    got = grad(loss)(params, x)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    want = torch.autograd.grad(loss(leaves, x), list(leaves.values()))
    for k, w in zip(leaves, want):
        assert torch.equal(got[k], w), k


def test_vmap_over_inputs_folds_into_the_batch_and_per_sample_gradients():
    torch.manual_seed(0)
    m = lk.LSTM(4, 5, num_layers=2)
    params = {k: v.detach() for k, v in m.named_parameters()}
    xs, lengths = torch.randn(3, 6, 2, 4), torch.tensor([6, 3])
    with torch.no_grad():
        batched = vmap(lambda x: m(x, lengths=lengths)[0])(xs)
        looped = torch.stack([m(x, lengths=lengths)[0] for x in xs])
    assert torch.allclose(batched, looped, atol=1e-6)

    def loss(p, x):
        return functional_call(m, p, (x,))[0].sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, xs)
    for s in range(3):
        one = grad(loss)(params, xs[s])
        for k in params:
            assert torch.allclose(per_sample[k][s], one[k], atol=1e-6), (s, k)


def test_torch_nn_lstm_has_no_vmap_rule():
    m = nn.LSTM(4, 5)
    with pytest.raises(RuntimeError, match="Batching rule not implemented"):
        vmap(lambda x: m(x)[0])(torch.randn(2, 3, 1, 4))


# --- the operators themselves -----------------------------------------------------------------

def _layer_args(coupled=False, proj=0, peephole=False, ln=False, lengths=False, masks=False, reverse=False):
    T, B, I, H = 5, 3, 4, 6
    G, P = (3 if coupled else 4), (proj or H)

    def r(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    lnp = (r(G * H), r(G * H), r(G * H), r(G * H), r(H), r(H)) if ln else (None,) * 6
    return (r(T, B, I), r(B, P), r(B, H), r(G * H, I), r(G * H, P), r(G * H), r(G * H), r(P, H) if proj else None,
            r(2 if coupled else 3, H) if peephole else None, *lnp, torch.tensor([5, 2, 4]) if lengths else None,
            (torch.rand(B, P, dtype=torch.float64) > 0.3).double() / 0.7 if masks else None,
            torch.rand(T, B, P) < 0.2 if masks else None, torch.rand(T, B, H) < 0.2 if masks else None,
            reverse, coupled, 1e-5)


_GRID = [
    {}, dict(coupled=True, peephole=True), dict(proj=3, lengths=True, reverse=True),
    dict(ln=True, masks=True), dict(ln=True, peephole=True, proj=2, lengths=True, masks=True, reverse=True),
]


@pytest.mark.parametrize("variant", _GRID, ids=lambda v: "-".join(v) or "plain")
def test_opcheck_every_operator(variant):
    torch.manual_seed(0)
    args = _layer_args(**variant)
    opcheck(torch.ops.lstmkit.lstm_layer.default, args)
    plain = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    opcheck(torch.ops.lstmkit.lstm_layer_infer.default, plain)
    out, h_n, c_n, gates, c, *records = torch.ops.lstmkit.lstm_layer(*plain)
    grads = (torch.randn_like(out), torch.randn_like(h_n), None, None, torch.randn_like(c))
    # the backward op is not differentiable again (it says so), hence no AOT-dispatch check for it
    opcheck(torch.ops.lstmkit.lstm_layer_backward.default, (*grads, *plain, out, gates, c, *records, True),
            test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    whh_t = plain[4].t().contiguous().float()
    opcheck(torch.ops.lstmkit.pack_whh.default, (whh_t, 3 if variant.get("coupled") else 4))
    opcheck(torch.ops.lstmkit.pack_cols.default, (whh_t,))


def test_compiled_inference_prepares_weights_once_and_sees_in_place_changes(tiled_mode):
    """A traced call brings no prepared weights: the operator keeps them per weight version."""
    tiled_mode("on")  # the packed copies are made too, whatever this CPU tiles by default
    ext = fused.load_extension()
    ext.clear_prepared_cache()
    torch.manual_seed(0)
    m = lk.LSTM(4, 8, num_layers=2, proj_size=3).eval()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    x = torch.randn(1, 5, 4)
    with torch.no_grad():
        for _ in range(3):
            assert torch.equal(compiled(x)[0], m(x)[0])
        entries = ext.prepared_cache_size()
        assert 0 < entries <= 16
        compiled(x)
        assert ext.prepared_cache_size() == entries  # nothing prepared again
        m.weight_hh_l1.mul_(0.5)  # an optimizer step, load_state_dict's copy_: the version moves
        m.weight_ih_l0.add_(0.1)
        m.bias_hh_l0.zero_()
        m.weight_hr_l1.mul_(-1)
        assert torch.equal(compiled(x)[0], m(x)[0])


def test_the_first_call_of_a_fresh_process_compiles_with_no_graph_break():
    """The kernel is loaded by the first forward; under fullgraph that happens while Dynamo traces."""
    _require_kernel()  # built (and cached) here, but not yet loaded in the child
    script = textwrap.dedent("""
        import torch, lstmkit as lk
        from lstmkit.kernels import fused
        assert fused.loaded_extension() is None
        for m in (lk.LSTM(4, 8, bidirectional=True), lk.sLSTM(4, 8, num_layers=2)):
            e = torch._dynamo.explain(m)(torch.randn(6, 3, 4), lengths=torch.tensor([6, 2, 4]))
            assert (e.graph_count, e.graph_break_count) == (1, 0), [str(r.reason)[:200] for r in e.break_reasons]
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
