"""lstm.decoder(): one-step decoding that keeps its plan, route and returned state between calls.

Its steps must be bit for bit the module's own T = 1 calls (the same operator on the same prepared
weights), match torch.nn.LSTM with copied weights, follow every change of the weights, mode and
options, validate any state it did not return itself, and answer bad input with one clear error.
Calls the whole-stack operator cannot run go through the module's forward, which the tests check
by making that forward fail where it must not be used.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lstmkit as lk
from test_fused import _require_kernel


@pytest.fixture(autouse=True)
def _kernel():
    """The lean path is the fused kernel's: built in CI, a skip elsewhere when it cannot build."""
    _require_kernel()


def _module_steps(lstm, xs, state=None):
    """The module's own one-step calls over xs (T, B, I) with the state carried: outputs (T, B, P)."""
    ys = []
    with torch.no_grad():
        for x in xs:
            seq = x.unsqueeze(1 if lstm.batch_first else 0)
            out, state = lstm(seq, state)
            ys.append(out[:, 0] if lstm.batch_first else out[0])
    return torch.stack(ys), state


def _decoder_steps(decoder, xs, state=None):
    ys = []
    for x in xs:
        y, state = decoder(x, state)
        ys.append(y)
    return torch.stack(ys), state


class _ForwardForbidden:
    """Within the block, the module's forward raises: the decoder must take its lean path."""

    def __init__(self, lstm):
        self.lstm = lstm

    def __enter__(self):
        def forbidden(*a, **k):
            raise AssertionError("the decoder went through the module's forward")

        self.lstm.forward = forbidden
        return self

    def __exit__(self, *exc):
        del self.lstm.forward


def _assert_same(got, want):
    assert torch.equal(got[0], want[0])
    assert torch.equal(got[1][0], want[1][0]) and torch.equal(got[1][1], want[1][1])


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("B", [1, 2, 5, 16])
@pytest.mark.parametrize("proj", [0, 6])
def test_steps_are_the_modules_own_calls(layers, B, proj):
    """Tiled (B >= 3) and untiled batches, stacks, the projection: bit for bit the module's calls."""
    torch.manual_seed(layers * 100 + B + proj)
    lstm = lk.LSTM(7, 12, layers, proj_size=proj, backend="fused").eval()
    xs = torch.randn(6, B, 7)
    h0 = (torch.randn(layers, B, proj or 12), torch.randn(layers, B, 12))
    want = _module_steps(lstm, xs, h0)
    decoder = lstm.decoder()
    with _ForwardForbidden(lstm):
        got = _decoder_steps(decoder, xs, h0)
    _assert_same(got, want)


def test_strided_steps_and_states():
    """A step sliced out of a batch-first tensor and a state sliced out of a bigger one are strided."""
    torch.manual_seed(10)
    lstm = lk.LSTM(6, 9, 2).eval()
    seqs = torch.randn(4, 7, 6)  # (B, T, I): seqs[:, t] is not contiguous
    big = (torch.randn(2, 8, 9), torch.randn(2, 8, 9))
    state = (big[0][:, ::2], big[1][:, ::2])  # (2, 4, 9), strided
    want = _module_steps(lstm, seqs.transpose(0, 1).contiguous(), state)
    got = _decoder_steps(lstm.decoder(), seqs.transpose(0, 1), state)
    _assert_same(got, want)


def test_matches_torch_lstm_with_copied_weights():
    torch.manual_seed(1)
    ref = nn.LSTM(10, 32, 2).eval()
    lstm = lk.LSTM(10, 32, 2).eval()
    lstm.load_state_dict(ref.state_dict())
    xs = torch.randn(20, 4, 10)
    with torch.no_grad():
        want_out, (want_h, want_c) = ref(xs)
    got, (h, c) = _decoder_steps(lstm.decoder(), xs)
    torch.testing.assert_close(got, want_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, want_h, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, want_c, rtol=1e-5, atol=1e-5)


def test_float64_batch_first_and_unbatched():
    torch.manual_seed(2)
    lstm = lk.LSTM(5, 8, 2, batch_first=True, dtype=torch.float64).eval()
    xs = torch.randn(4, 3, 5, dtype=torch.float64)
    decoder = lstm.decoder()
    with _ForwardForbidden(lstm):
        got = _decoder_steps(decoder, xs)
    _assert_same(got, _module_steps(lstm, xs))
    # unbatched: x (I,), state (L, ·); the module's unbatched input is (T, I)
    x1 = torch.randn(5, dtype=torch.float64)
    with _ForwardForbidden(lstm):
        y, (h, c) = decoder(x1)
        y2, (h2, c2) = decoder(x1, (h, c))  # its own unbatched state, passed back
    assert y.shape == (8,) and h.shape == (2, 8) and c.shape == (2, 8)
    with torch.no_grad():
        out, (mh, mc) = lstm(x1[None])
        out2, (mh2, mc2) = lstm(x1[None], (mh, mc))
    assert torch.equal(y, out[0]) and torch.equal(y2, out2[0]) and torch.equal(h2, mh2) and torch.equal(c2, mc2)


def test_follows_weight_changes_in_place_and_replaced():
    torch.manual_seed(3)
    lstm = lk.LSTM(6, 10, 2).eval()
    decoder = lstm.decoder()
    x = torch.randn(5, 6)
    first = decoder(x)
    opt = torch.optim.SGD(lstm.parameters(), lr=0.5)
    lstm(torch.randn(3, 5, 6))[0].sum().backward()
    opt.step()  # in place: every parameter's version moves
    _assert_same(decoder(x), _one(lstm, x))
    assert not torch.equal(decoder(x)[0], first[0])
    lstm.weight_hh_l1 = nn.Parameter(torch.randn_like(lstm.weight_hh_l1))  # replaced
    _assert_same(decoder(x), _one(lstm, x))
    with torch.no_grad():
        lstm.bias_ih_l0.add_(1.0)  # in place under no_grad
    _assert_same(decoder(x), _one(lstm, x))
    lstm.load_state_dict(lk.LSTM(6, 10, 2).state_dict())
    _assert_same(decoder(x), _one(lstm, x))
    lstm.double()  # swaps every parameter's .data: no version counter moves
    x64 = x.double()
    _assert_same(decoder(x64), _one(lstm, x64))


def _one(lstm, x, state=None):
    with torch.no_grad():
        out, state = lstm(x[None], state)
    return out[0], state


def test_own_state_is_trusted_until_changed_in_place():
    torch.manual_seed(4)
    lstm = lk.LSTM(4, 6, 2).eval()
    decoder = lstm.decoder()
    x = torch.randn(3, 4)
    _, state = decoder(x)
    checked = []
    real = lstm._initial_state
    lstm._initial_state = lambda *a: checked.append(1) or real(*a)
    _, state = decoder(x, state)
    assert checked == []  # passed straight back: no check
    state[0][0, 0, 0] = float("nan")  # changed since it was returned: checked again
    with pytest.raises(ValueError, match="h0 must be finite"):
        decoder(x, state)
    assert checked == [1]
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 3, 6\)"):
        decoder(x, (torch.zeros(2, 4, 6), torch.zeros(2, 4, 6)))  # another batch's state


def test_bad_input_gets_one_clear_error():
    lstm = lk.LSTM(4, 6).eval()
    decoder = lstm.decoder()
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        decoder([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=r"x must be one step, \(batch, 4\) or \(4,\) unbatched, got \(1, 3, 4\)"):
        decoder(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match=r"got \(3, 5\)"):
        decoder(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="x must be finite"):
        decoder(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(TypeError, match="dtype"):
        decoder(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="empty batch"):
        decoder(torch.zeros(0, 4))
    with pytest.raises(TypeError, match="hx must be a tuple"):
        decoder(torch.zeros(2, 4), torch.zeros(1, 2, 6))
    with pytest.raises(ValueError, match="unidirectional"):
        lk.LSTM(4, 6, bidirectional=True).decoder()


def test_no_autograd_history_even_with_grad_enabled():
    lstm = lk.LSTM(4, 6, 2)
    x = torch.randn(2, 4, requires_grad=True)
    y, (h, c) = lstm.eval().decoder()(x)
    assert y.grad_fn is None and not y.requires_grad and h.grad_fn is None and c.grad_fn is None


@pytest.mark.parametrize("kwargs", [dict(peephole=True), dict(layer_norm=True), dict(zoneout=0.2),
                                    dict(coupled=True), dict(backend="reference")])
def test_variants_and_other_backends_go_through_the_module(kwargs):
    """Every lk.LSTM decodes: what the whole-stack operator cannot run is the module's own call."""
    torch.manual_seed(5)
    lstm = lk.LSTM(5, 7, 2, **kwargs).eval()
    xs = torch.randn(4, 3, 5)
    _assert_same(_decoder_steps(lstm.decoder(), xs), _module_steps(lstm, xs))


def test_route_follows_the_modules_mode():
    """Dropout between layers acts in training: a decoder then runs the module's forward (masks
    drawn as the module draws them); back in eval it takes the lean path again."""
    torch.manual_seed(6)
    lstm = lk.LSTM(5, 7, 2, dropout=0.5)
    decoder = lstm.decoder()
    x = torch.randn(3, 5)
    torch.manual_seed(7)
    got = decoder(x)
    torch.manual_seed(7)
    _assert_same(got, _one(lstm, x))
    lstm.eval()
    with _ForwardForbidden(lstm):
        got = decoder(x)
    _assert_same(got, _one(lstm, x))


def test_decoder_of_a_traced_call_goes_through_the_module():
    """Under torch.compile the decoder traces the module's forward (its own caches are eager-only)."""
    torch.manual_seed(8)
    lstm = lk.LSTM(5, 7, 2).eval()
    decoder = lstm.decoder()
    x = torch.randn(3, 5)
    compiled = torch.compile(lambda x: decoder(x), backend="eager", fullgraph=True)
    with torch.no_grad():
        got = compiled(x)
    _assert_same(got, _one(lstm, x))


def test_inside_inference_mode_and_with_a_model_made_there():
    """Inference tensors keep no version counter: the decoder still runs, on its identity checks."""
    torch.manual_seed(9)
    lstm = lk.LSTM(4, 6, 2).eval()
    xs = torch.randn(5, 3, 4)
    want = _module_steps(lstm, xs)
    with torch.inference_mode():
        got = _decoder_steps(lstm.decoder(), xs)
        made_here = lk.LSTM(4, 6, 2).eval()
        made_here.load_state_dict(lstm.state_dict())
        decoder = made_here.decoder()
        again = _decoder_steps(decoder, xs)
        module_again = _module_steps(made_here, xs)
        # loaded in place inside inference mode, where no version counter moves: neither the
        # decoder's plan nor the module's caches may serve the old weights
        other = lk.LSTM(4, 6, 2).eval()
        made_here.load_state_dict(other.state_dict())
        after_load = _decoder_steps(decoder, xs)
        module_after_load = _module_steps(made_here, xs)
    _assert_same(got, want)
    _assert_same(again, want)
    _assert_same(module_again, want)
    _assert_same(after_load, _module_steps(other, xs))
    _assert_same(module_after_load, _module_steps(other, xs))


def test_meta_and_fake_tensors_give_the_shapes():
    """Shape-only calls (meta weights, FakeTensorMode) go through the module's forward too."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    meta = lk.LSTM(4, 6, 2, proj_size=3).eval().to("meta")
    y, (h, c) = meta.decoder()(torch.empty(5, 4, device="meta"))
    assert (y.shape, h.shape, c.shape) == ((5, 3), (2, 5, 3), (2, 5, 6)) and y.is_meta
    decoder = lk.LSTM(4, 6, 2).eval().decoder()
    with FakeTensorMode(allow_non_fake_inputs=True):
        y, (h, c) = decoder(torch.empty(5, 4))
    assert (y.shape, h.shape, c.shape) == ((5, 6), (2, 5, 6), (2, 5, 6))
