"""Streaming: StreamingLSTM.step, one input at a time, equals the full-sequence run step for step."""
from __future__ import annotations

import itertools

import pytest
import torch

import lstmkit as lk
from conftest import assert_close
from lstmkit.interop import StreamingLSTM

F64 = torch.float64


@pytest.mark.parametrize("layers,proj,bias,B,with_hx",
                         list(itertools.product([1, 3], [0, 3], [True, False], [1, 2], [False, True])))
def test_stream_equals_full_sequence_step_for_step(layers, proj, bias, B, with_hx):
    torch.manual_seed(layers * 100 + proj * 10 + bias + B)
    model = lk.LSTM(4, 6, num_layers=layers, proj_size=proj, bias=bias, backend="reference", dtype=F64).eval()
    P = proj or 6
    T = 7
    x = torch.randn(T, B, 4, dtype=F64)
    hx = (torch.randn(layers, B, P, dtype=F64), torch.randn(layers, B, 6, dtype=F64)) if with_hx else None
    stream = StreamingLSTM(model)
    state = hx
    with torch.no_grad():
        full_out, _ = model(x, hx)
        for t in range(T):
            y_t, state = stream.step(x[t], state)
            prefix_out, (h_t, c_t) = model(x[: t + 1], hx)  # the full-sequence run stopped at step t
            assert_close(y_t, full_out[t], F64, f"y at step {t}")
            assert_close(state[0], h_t, F64, f"h after step {t}")
            assert_close(state[1], c_t, F64, f"c after step {t}")


def test_unbatched_stream_and_run_match_the_module():
    torch.manual_seed(5)
    model = lk.LSTM(3, 5, num_layers=2, backend="reference", dtype=F64).eval()
    x = torch.randn(6, 3, dtype=F64)  # (T, I): unbatched, as lk.LSTM accepts
    with torch.no_grad():
        out, (h, c) = model(x)
        ys, (hs, cs) = StreamingLSTM(model).run(x)
        y0, (h0, c0) = StreamingLSTM(model).step(x[0])
    assert y0.shape == (5,) and h0.shape == (2, 5) and c0.shape == (2, 5)
    assert_close(ys, out, F64, "outputs")
    assert_close(hs, h, F64, "h_n")
    assert_close(cs, c, F64, "c_n")


def test_hand_over_between_full_run_and_stream():
    """Warm up on a prefix with the full forward, then continue streaming from its (h_n, c_n)."""
    torch.manual_seed(6)
    model = lk.LSTM(3, 5, num_layers=2, proj_size=2, batch_first=True, backend="reference", dtype=F64).eval()
    x = torch.randn(1, 10, 3, dtype=F64)  # batch_first: (B, T, I)
    with torch.no_grad():
        full, (h_full, c_full) = model(x)
        _, state = model(x[:, :4])
        stream = StreamingLSTM(model)
        for t in range(4, 10):
            y_t, state = stream.step(x[:, t], state)
            assert_close(y_t, full[:, t], F64, f"step {t}")
    assert_close(state[0], h_full, F64, "h_n")
    assert_close(state[1], c_full, F64, "c_n")


def test_float32_stream_matches_native_backend():
    torch.manual_seed(8)
    model = lk.LSTM(8, 16, num_layers=2, backend="native").eval()
    x = torch.randn(20, 1, 8)
    with torch.no_grad():
        out, _ = model(x)
        ys, _ = StreamingLSTM(model).run(x)
    assert_close(ys, out, torch.float32, "outputs")


def _fused_or_skip():
    from test_fused import _require_kernel

    _require_kernel()


@pytest.mark.parametrize("engine", ["torch", "fused"])
def test_weights_are_snapshotted_until_refresh(engine):
    if engine == "fused":
        _fused_or_skip()
    model = lk.LSTM(2, 3, backend="reference" if engine == "torch" else "auto", dtype=F64).eval()
    stream = StreamingLSTM(model, engine=engine)
    assert stream.engine == engine
    x = torch.randn(1, 2, dtype=F64)
    before, _ = stream.step(x)
    with torch.no_grad():
        model.weight_ih_l0.add_(1.0)
        expected, _ = model(x.unsqueeze(0))
    assert torch.equal(stream.step(x)[0], before)
    stream.refresh()
    assert_close(stream.step(x)[0], expected[0], F64, "after refresh")


def test_streaming_rejects_what_cannot_stream():
    with pytest.raises(ValueError, match="bidirectional"):
        StreamingLSTM(lk.LSTM(2, 3, bidirectional=True))
    stream = StreamingLSTM(torch.nn.LSTM(2, 3, num_layers=2))  # torch.nn.LSTM is accepted too
    with pytest.raises(ValueError, match=r"x_t must be \(B, 2\)"):
        stream.step(torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"state must be \(h \(2, 1, 3\)"):
        stream.step(torch.zeros(1, 2), (torch.zeros(1, 1, 3), torch.zeros(1, 1, 3)))


STREAM_VARIANTS = [dict(peephole=True), dict(coupled=True, peephole=True), dict(layer_norm=True, proj_size=3),
                   dict(zoneout=(0.4, 0.2)), dict(layer_norm=True, zoneout=0.3, recurrent_dropout=0.5, weight_drop=0.3)]


@pytest.mark.parametrize("config", STREAM_VARIANTS, ids=lambda c: "+".join(c))
@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_variants_stream_as_the_module_computes_them_in_eval(config, engine):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    torch.manual_seed(11)
    dtype = F64 if engine == "torch" else torch.float32
    model = lk.LSTM(4, 6, num_layers=2, backend="reference", dtype=dtype, **config)
    with torch.no_grad():
        for p in model.parameters():  # LN gains 1 and peepholes 0 at init would hide a wrong mapping
            p.uniform_(-0.6, 0.6)
    stream = StreamingLSTM(model.train(), engine=engine)  # snapshot in eval semantics, whatever the mode
    model.eval()
    x = torch.randn(8, 2, 4, dtype=dtype)
    with torch.no_grad():
        out, (h, c) = model(x)
        ys, (hs, cs) = stream.run(x)
    assert_close(ys, out, dtype, "outputs")
    assert_close(hs, h, dtype, "h_n")
    assert_close(cs, c, dtype, "c_n")


@pytest.mark.parametrize("layers,proj,B,with_hx", list(itertools.product([1, 3], [0, 3], [1, 2], [False, True])))
def test_onnxruntime_engine_equals_full_sequence(layers, proj, B, with_hx):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(layers * 10 + proj + B)
    model = lk.LSTM(4, 6, num_layers=layers, proj_size=proj, backend="reference").eval()
    ref = lk.LSTM(4, 6, num_layers=layers, proj_size=proj, backend="reference", dtype=F64).eval()
    ref.load_state_dict(model.state_dict())
    P, T = proj or 6, 7
    x = torch.randn(T, B, 4)
    hx = (torch.randn(layers, B, P), torch.randn(layers, B, 6)) if with_hx else None
    stream = StreamingLSTM(model, engine="onnxruntime")
    with torch.no_grad():
        full, (h_n, c_n) = ref(x.double(), None if hx is None else tuple(t.double() for t in hx))
    state = hx
    for t in range(T):
        y_t, state = stream.step(x[t], state)
        torch.testing.assert_close(y_t.double(), full[t], rtol=1e-5, atol=1e-5)  # onnxruntime computes in float32
    torch.testing.assert_close(state[0].double(), h_n, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state[1].double(), c_n, rtol=1e-5, atol=1e-5)


def test_onnxruntime_engine_unbatched_and_engine_names():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(12)
    model = lk.LSTM(3, 5, num_layers=2, backend="reference").eval()
    x = torch.randn(6, 3)
    with torch.no_grad():
        out, (h, c) = model(x)
    ys, (hs, cs) = StreamingLSTM(model, engine="onnxruntime").run(x)
    assert ys.shape == (6, 5) and hs.shape == (2, 5)
    assert_close(ys, out, torch.float32, "outputs")
    assert_close(cs, c, torch.float32, "c_n")
    with pytest.raises(ValueError, match="engine must be"):
        StreamingLSTM(model, engine="cuda")


# --- the fused engine: lk.LSTM.decoder() on a frozen copy --------------------------------------

@pytest.mark.parametrize("layers,proj,B,unbatched", [(1, 0, 1, False), (2, 0, 3, False), (3, 4, 5, False),
                                                     (2, 0, 1, True), (2, 4, 1, True)])
def test_fused_engine_equals_the_module(layers, proj, B, unbatched):
    _fused_or_skip()
    torch.manual_seed(layers * 10 + proj + B)
    model = lk.LSTM(5, 8, num_layers=layers, proj_size=proj).eval()
    stream = StreamingLSTM(model, engine="fused")
    assert stream.engine == "fused"
    x = torch.randn(6, 5) if unbatched else torch.randn(6, B, 5)
    with torch.no_grad():
        want = [model(x[: t + 1]) for t in range(6)]  # each prefix as one whole-sequence call
    state = None
    for t in range(6):
        y_t, state = stream.step(x[t], state)
        assert_close(y_t, want[t][0][t], torch.float32, f"y at step {t}")
        assert_close(state[0], want[t][1][0], torch.float32, f"h after step {t}")
        assert_close(state[1], want[t][1][1], torch.float32, f"c after step {t}")


def test_auto_engine_and_what_the_fused_engine_cannot_run():
    _fused_or_skip()
    stream = StreamingLSTM(lk.LSTM(2, 3, dtype=F64), engine="fused")
    assert StreamingLSTM(lk.LSTM(64, 256)).engine == "fused"                        # auto: large enough
    assert StreamingLSTM(lk.LSTM(32, 128)).engine == "torch"                        # auto: too small to pay
    assert StreamingLSTM(lk.LSTM(64, 256, peephole=True)).engine == "torch"       # auto: a variant
    assert StreamingLSTM(lk.LSTM(64, 256, backend="reference")).engine == "torch"  # auto: the module's choice
    with pytest.raises(ValueError, match="engine='fused' runs lk.LSTM's plain model"):
        StreamingLSTM(lk.LSTM(2, 3, layer_norm=True), engine="fused")
    with pytest.raises(ValueError, match=r"state must be \(h \(1, 3\), c \(1, 3\)\)"):
        stream.step(torch.zeros(2, dtype=F64), (torch.zeros(1, 1, 3, dtype=F64), torch.zeros(1, 1, 3, dtype=F64)))
