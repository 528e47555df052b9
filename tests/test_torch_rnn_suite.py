"""PyTorch's own test cases for nn.LSTM / nn.LSTMCell / nn.RNN / packed sequences, rewritten to run
against lk.LSTM / lk.LSTMCell / lk.RNN.

Each test below is named after the PyTorch test it ports (test/test_nn.py, TestNN and
TestNNDeviceType; test/nn/test_pruning.py). CUDA- and multi-GPU-only cases are ported to what
the CPU can check (a "meta" tensor stands in for a second device; "cpu vs cudnn" becomes lk.*
against torch.nn on the CPU with the same grid). GRU and GRUCell / RNNCell cases are left out:
lstmkit has neither.

Deliberate differences (the test asserts lstmkit's behaviour, not torch's):

| PyTorch test | torch.nn | lstmkit | why |
|---|---|---|---|
| test_rnn_args_check, test_projections_lstm_args_check, test_RNN_cell_no_broadcasting | RuntimeError | ValueError naming the expected and the received shape | lstmkit's rule: bad input gets one ValueError/TypeError saying what was expected and what came |
| test_cudnn_forward_exception | "Expected hidden size …, got …", "input.size(-1) must be equal to input_size" | "h0 must have shape (…), got (…)", "input's last dimension must be input_size=10, got 3" | same rule, lstmkit's wording |
| test_rnn_check_device, test_projections_lstm_check_device | RuntimeError "… not at the same device" (multi-GPU) | ValueError "input is on meta but the weights are on cpu" | same rule; ported with the meta device |
| test_error_RNN_seq_len_zero | RuntimeError | ValueError "zero time steps" | same rule |
| test_RNN_input_size_zero | a batch of 0 sequences runs, output (5, 0, 4) | ValueError "empty batch" | an empty batch is a data-pipeline bug far more often than intended; lstmkit refuses it by design |
| test_RNN_cell_forward_zero_hidden_size | hidden_size=0 gives (3, 0) states | ValueError at construction | a cell with no units is refused like any non-positive size |
| test_projections_errors_on_gru_and_rnn | ValueError "proj_size argument is only supported for LSTM" | TypeError: lk.RNN has no proj_size parameter | lk.RNN's signature is torch.nn.RNN's documented one; proj_size is LSTM-only there too |
| test_RNN_nonlinearity | ValueError "Unknown nonlinearity 'garbage'" | ValueError "nonlinearity must be one of 'tanh', 'relu', got 'garbage'" | wording |
| test_LSTM_grad_and_gradgrad, test_LSTM_differentiable_backward_using_oneDNN | double backward works | works on backend="reference" and "native"; on "auto" on CPU (the fused kernel) one RuntimeError naming backend='reference' | the fused kernel's backward through time is hand-written and first-order only |

Counts: 33 PyTorch tests ported (test_RNN_cpu_vs_cudnn covers torch's _no_dropout and
_with_dropout, with its nonlinearity loop split into test_RNN_cpu_vs_cudnn_nonlinearity), 13 of
them asserting a deliberate difference above; beside them three of lstmkit's own (marked
"not a port"). ``python -m pytest tests/test_torch_rnn_suite.py -q`` runs them all.
"""
from __future__ import annotations

import copy
import io
import itertools
import warnings
from functools import partial

import pytest
import torch
import torch.nn.utils.rnn as rnn_utils
from torch import nn
from torch.nn.utils import prune

import lstmkit as lk

LK = {"RNN": lk.RNN, "LSTM": lk.LSTM}
TORCH = {"RNN": nn.RNN, "LSTM": nn.LSTM}

# float64: same maths, summation order only. float32: torch's oneDNN kernels round differently.
PREC = {torch.float64: 1e-10, torch.float32: 2e-5}


def twin(mode, *args, **kw):
    """An lk module and a torch.nn one with the same weights."""
    ref = TORCH[mode](*args, **kw)
    ours = LK[mode](*args, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


# --------------------------------------------------------------------------- argument checks


def _update_shape(shape, dim, size):
    shape = list(shape)
    shape[dim] = size
    return tuple(shape)


@pytest.mark.parametrize("mode", ["RNN", "LSTM"])
def test_rnn_args_check(mode):
    input_size, hidden_size, num_layers, batch_size, seq_len, bad = 3, 5, 2, 4, 6, 7
    good_in, good_h = (seq_len, batch_size, input_size), (num_layers, batch_size, hidden_size)

    def inputs(input_shape, hidden_shape):
        x, h = torch.randn(input_shape), torch.randn(hidden_shape)
        if mode != "LSTM":
            return [(x, h)]
        if hidden_shape == good_h:
            return [(x, (h, h))]
        ok = torch.randn(good_h)
        return [(x, (h, ok)), (x, (ok, h))]

    cases = [
        (_update_shape(good_in, 1, bad), good_h),  # input batch size
        (good_in, _update_shape(good_h, 1, bad)),  # hidden batch size
        (_update_shape(good_in, 2, bad), good_h),  # input size
        (good_in, _update_shape(good_h, 2, bad)),  # hidden size
        (good_in, _update_shape(good_h, 0, bad)),  # hidden[0]: layers × directions
    ]
    model = LK[mode](input_size, hidden_size, num_layers)
    for input_shape, hidden_shape in cases:
        for x, h in inputs(input_shape, hidden_shape):
            with pytest.raises(ValueError, match="must have shape|last dimension must be input_size"):
                model(x, h)


def test_projections_lstm_args_check():
    input_size, hidden_size, proj_size, num_layers, batch_size, seq_len, bad = 3, 5, 2, 2, 4, 6, 7
    good_in = (seq_len, batch_size, input_size)
    good_h, good_c = (num_layers, batch_size, proj_size), (num_layers, batch_size, hidden_size)
    cases = [
        (_update_shape(good_in, 1, bad), good_h, good_c),
        (good_in, _update_shape(good_h, 1, bad), _update_shape(good_c, 1, bad)),
        (_update_shape(good_in, 2, bad), good_h, good_c),
        (good_in, _update_shape(good_h, 2, bad), _update_shape(good_c, 2, bad)),
        (good_in, _update_shape(good_h, 0, bad), _update_shape(good_c, 0, bad)),
        (good_in, _update_shape(good_h, 0, hidden_size), good_c),  # proj size = hidden size
        (good_in, _update_shape(good_h, 0, bad), good_c),
        (good_in, good_h, _update_shape(good_c, 0, bad)),  # cell size != hidden size
    ]
    model = lk.LSTM(input_size, hidden_size, num_layers, proj_size=proj_size)
    for input_shape, h_shape, c_shape in cases:
        with pytest.raises(ValueError, match="must have shape|last dimension must be input_size"):
            model(torch.randn(input_shape), (torch.randn(h_shape), torch.randn(c_shape)))


def test_cudnn_forward_exception():
    rnns = [
        (lk.LSTM(10, 20, batch_first=True), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
        (lk.LSTM(10, 20, batch_first=True, proj_size=10), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
        (lk.RNN(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
    ]
    x_wrong, x_right = torch.randn(2, 3, 3), torch.randn(2, 3, 10)
    for rnn, hidden in rnns:
        with pytest.raises(ValueError, match=r"h0 must have shape \(1, 2, (20|10)\), got \(1, 2, 19\)"):
            rnn(x_right, hidden)
        with pytest.raises(ValueError, match=r"input's last dimension must be input_size=10, got 3"):
            rnn(x_wrong)


@pytest.mark.parametrize("mode", ["RNN", "LSTM"])
def test_rnn_check_device(mode):
    model = LK[mode](3, 5, 2)
    x, h = torch.randn(6, 4, 3), torch.randn(2, 4, 5)
    with pytest.raises(ValueError, match="input is on meta but the weights are on cpu"):
        model(x.to("meta"))
    hx = (h.to("meta"), h.to("meta")) if mode == "LSTM" else h.to("meta")
    with pytest.raises(ValueError, match="h0 is on meta but the weights are on cpu"):
        model(x, hx)
    if mode == "LSTM":
        with pytest.raises(ValueError, match="c0 is on meta but the weights are on cpu"):
            model(x, (h, h.to("meta")))


def test_projections_lstm_check_device():
    model = lk.LSTM(3, 5, 2, proj_size=2)
    x, h, c = torch.randn(6, 4, 3), torch.randn(2, 4, 2), torch.randn(2, 4, 5)
    with pytest.raises(ValueError, match="input is on meta"):
        model(x.to("meta"))
    with pytest.raises(ValueError, match="h0 is on meta"):
        model(x, (h.to("meta"), c.to("meta")))
    with pytest.raises(ValueError, match="c0 is on meta"):
        model(x, (h, c.to("meta")))


def test_projections_errors_on_gru_and_rnn():
    with pytest.raises(TypeError, match="proj_size"):
        lk.RNN(30, 20, 2, proj_size=10)


def test_RNN_nonlinearity():
    assert lk.RNN(1, 10).nonlinearity == "tanh"
    assert lk.RNN(1, 10, nonlinearity="relu").nonlinearity == "relu"
    with pytest.raises(ValueError, match="nonlinearity must be one of 'tanh', 'relu', got 'garbage'"):
        lk.RNN(1, 10, nonlinearity="garbage")


def test_RNN_nonlinearity_passed_as_arg():
    assert lk.RNN(2, 3, 1, "relu").nonlinearity == "relu"


@pytest.mark.parametrize("mode", ["RNN", "LSTM"])
@pytest.mark.parametrize("p", [-0.1, 1.1])
def test_rnn_invalid_dropout(mode, p):
    """Not a port: torch.nn.RNNBase's own ValueError for dropout outside [0, 1]."""
    with pytest.raises(ValueError, match="dropout"):
        LK[mode](3, 4, 2, dropout=p)


def test_error_RNN_seq_len_zero():
    for mode, bidirectional in itertools.product(LK, [True, False]):
        with pytest.raises(ValueError, match="zero time steps"):
            LK[mode](5, 6, bidirectional=bidirectional)(torch.ones(0, 10, 5))


def test_RNN_input_size_zero():
    for mode in LK:
        with pytest.raises(ValueError, match="empty batch"):
            LK[mode](input_size=3, hidden_size=4)(torch.zeros(5, 0, 3))


# --------------------------------------------------------------------------- initial state


@pytest.mark.parametrize("mode", ["RNN", "LSTM"])
def test_rnn_initial_hidden_state(mode):
    rnn = LK[mode](30, 20, 2)
    x, hidden = torch.randn(10, 32, 30), torch.zeros(2, 32, 20)
    if mode == "LSTM":
        hidden = (hidden, hidden)
    out1, h1 = rnn(x, hidden)
    out2, h2 = rnn(x)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(h1, h2)


@pytest.mark.parametrize("bidir", [False, True])
def test_projections_lstm_initial_hidden_state(bidir):
    rnn = lk.LSTM(30, 20, 2, bidirectional=bidir, proj_size=10)
    D = 2 if bidir else 1
    x = torch.randn(10, 32, 30)
    hidden = (torch.zeros(2 * D, 32, 10), torch.zeros(2 * D, 32, 20))
    out1, h1 = rnn(x, hidden)
    out2, h2 = rnn(x)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(h1, h2)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0, 0.276, 0.731, 1])
@pytest.mark.parametrize("train", [True, False])
def test_RNN_dropout(p, train):
    """Dropout sits between layers: with all-ones weights every unit of layer 1 holds 10, and
    layer 2's units sum 1000 (scaled) survivors of it."""
    rnn = lk.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu").double().train(train)
    for name in ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"):
        getattr(rnn, name).data.fill_(1)
    output, hy = rnn(torch.ones(1, 1, 10, dtype=torch.double), torch.zeros(2, 1, 1000, dtype=torch.double))
    assert output.min() == output.max()
    value = output[0, 0, 0].item()
    if p == 0 or not train:
        assert value == 10000
    elif p == 1:
        assert value == 0
    else:
        assert 8000 < value < 12000
        denorm = (value * (1 - p)) % 10
        assert min(denorm, 10 - denorm) < 1e-2
    assert hy[0].min() == hy[0].max() and hy[1].min() == hy[1].max()
    assert hy[0, 0, 0].item() == 10 and hy[1, 0, 0].item() == value


@pytest.mark.parametrize("mode", ["RNN", "LSTM"])
@pytest.mark.parametrize("p", [0, 0.1234])
@pytest.mark.parametrize("train", [True, False])
def test_RNN_dropout_state(mode, p, train):
    kw = dict(bias=False, dropout=p) | ({"nonlinearity": "relu"} if mode == "RNN" else {})
    rnn = LK[mode](100, 100, 2, **kw).train(train)
    x = torch.rand(1, 1, 100)
    hx = torch.rand(2, 1, 100)
    hx = (hx, hx) if mode == "LSTM" else hx
    out1, hy1 = rnn(x, hx)
    out2, hy2 = rnn(x, hx)
    buf = io.BytesIO()
    torch.save(rnn, buf)
    buf.seek(0)
    rnn2 = torch.load(buf, weights_only=False)
    rnn2.flatten_parameters()
    out3, hy3 = rnn2(x, hx)
    if p == 0 or not train:
        torch.testing.assert_close(out1, out2)
        torch.testing.assert_close(out1, out3)
        torch.testing.assert_close(hy1, hy3)
    else:
        assert not torch.equal(out1, out2) and not torch.equal(out1, out3)


@pytest.mark.parametrize("train", [True, False])
def test_RNN_change_dropout(train):
    rnn = lk.RNN(100, 100, 2, dropout=0, nonlinearity="relu").double().train(train)
    x = torch.rand(3, 2, 100, dtype=torch.double)
    prev = None
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        rnn.dropout = p
        out1, hy1 = rnn(x)
        out2, hy2 = rnn(x)
        if p == 0 or p == 1 or not train:
            torch.testing.assert_close(out1, out2)
            torch.testing.assert_close(hy1, hy2)
        else:
            assert not torch.equal(out1, out2) and not torch.equal(hy1, hy2)
        if prev is not None:
            assert torch.equal(out1, prev) if not train else not torch.equal(out1, prev)
        prev = out1.detach()


# --------------------------------------------------------------------------- lk.* against torch.nn (ported "cpu vs cudnn")


def _make_noncontig(t):
    return torch.stack([t.clone().zero_(), t], t.dim()).select(t.dim(), 1)


def _forward_backward(rnn, input_val, grad_output, weights_val, hx_val, grad_hy, cx_val=None, grad_cy=None):
    is_lstm = "LSTM" in type(rnn).__name__
    for x_layer, y_layer in zip(rnn.all_weights, weights_val):
        for x, y in zip(x_layer, y_layer):
            x.data.copy_(y.data)
    if isinstance(input_val, rnn_utils.PackedSequence):
        data = input_val.data.detach().clone().requires_grad_(True)
        inp, input_var = rnn_utils.PackedSequence(data, input_val.batch_sizes), data
    else:
        inp = input_var = input_val.detach().clone().requires_grad_(True)
    if is_lstm:
        hx = (hx_val.detach().clone().requires_grad_(True),
              (hx_val if cx_val is None else cx_val).add(1).detach().requires_grad_(True))
    else:
        hx = hx_val.detach().clone().requires_grad_(True)
    output, hy = rnn(inp, hx)
    if isinstance(output, rnn_utils.PackedSequence):
        output = output.data
    if is_lstm:
        g_cy = grad_hy + 1 if grad_cy is None else grad_cy + 1
        torch.autograd.backward([output, hy[0], hy[1]], [grad_output, grad_hy, g_cy])
    else:
        torch.autograd.backward([output, hy], [grad_output, grad_hy])
    return {
        "output": output.detach(), "hy": (hy[0] if is_lstm else hy).detach(),
        "grad_input": input_var.grad, "grad_hx": (hx[0] if is_lstm else hx).grad,
        "cy": hy[1].detach() if is_lstm else None, "grad_cx": hx[1].grad if is_lstm else None,
        "weight_grads": [w.grad for layer in rnn.all_weights for w in layer],
    }


def _compare(ours, ref, dtype):
    assert list(ours) == list(ref)
    for key in ours:
        a, b = ours[key], ref[key]
        if key == "weight_grads":
            for ga, gb in zip(a, b):
                torch.testing.assert_close(ga, gb, atol=PREC[dtype], rtol=0)
        elif a is not None:
            torch.testing.assert_close(a, b, atol=PREC[dtype], rtol=0, msg=key)


GRID = list(itertools.product((True, False), repeat=6))  # bias, bidirectional, batch_first, contig, variable_len, lens_as_tensor


@pytest.mark.parametrize("module", ["RNN", "LSTM", "LSTM-proj"])
@pytest.mark.parametrize("dropout", [0, 1])
def test_RNN_cpu_vs_cudnn(module, dropout):
    """torch's cpu-vs-cudnn grid, with lk.* in cuDNN's place: every combination of bias,
    direction, layout, contiguity and packed lengths; outputs, final states, and gradients of
    input, initial states and every weight (weights copied through all_weights)."""
    dtype, input_size, hidden_size, proj_size, num_layers, seq_length, batch = torch.double, 10, 6, 3, 2, 7, 6
    mode, proj = module.split("-")[0], module.endswith("proj")
    P = proj_size if proj else hidden_size
    grid = GRID if dropout == 0 else GRID[::8]  # dropout=1 zeroes layer 2's input: a few cases suffice
    for bias, bidirectional, batch_first, contig, variable_len, lens_as_tensor in grid:
        torch.manual_seed(0)
        D = 2 if bidirectional else 1
        shape_in = (batch, seq_length, input_size) if batch_first else (seq_length, batch, input_size)
        shape_out = (batch, seq_length, P * D) if batch_first else (seq_length, batch, P * D)
        input_val, grad_output = torch.randn(shape_in, dtype=dtype), torch.randn(shape_out, dtype=dtype)
        hx_val, grad_hy = torch.randn(num_layers * D, batch, P, dtype=dtype), torch.randn(num_layers * D, batch, P, dtype=dtype)
        cx_val = grad_cy = None
        if proj:
            cx_val = torch.randn(num_layers * D, batch, hidden_size, dtype=dtype)
            grad_cy = torch.randn(num_layers * D, batch, hidden_size, dtype=dtype)
        if not contig:
            grad_output, grad_hy, input_val, hx_val = map(_make_noncontig, (grad_output, grad_hy, input_val, hx_val))
            if proj:
                grad_cy, cx_val = _make_noncontig(grad_cy), _make_noncontig(cx_val)
        if variable_len:
            lengths = [7, 5, 5, 2, 1, 1]
            if lens_as_tensor:
                lengths = torch.tensor(lengths, dtype=torch.long)
            input_val = rnn_utils.pack_padded_sequence(input_val, lengths, batch_first=batch_first)
            grad_output = rnn_utils.pack_padded_sequence(grad_output, lengths, batch_first=batch_first).data
        kw = dict(bias=bias, dropout=dropout, bidirectional=bidirectional, batch_first=batch_first)
        if proj:
            kw["proj_size"] = proj_size
        ref = TORCH[mode](input_size, hidden_size, num_layers, **kw).to(dtype)
        ours = LK[mode](input_size, hidden_size, num_layers, **kw).to(dtype)
        args = (input_val, grad_output, ref.all_weights, hx_val, grad_hy, cx_val, grad_cy)
        _compare(_forward_backward(ours, *args), _forward_backward(ref, *args), dtype)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_RNN_cpu_vs_cudnn_nonlinearity(nonlinearity):
    dtype = torch.double
    torch.manual_seed(0)
    ref = nn.RNN(10, 6, 2, nonlinearity=nonlinearity).to(dtype)
    ours = lk.RNN(10, 6, 2, nonlinearity=nonlinearity).to(dtype)
    args = (torch.randn(7, 6, 10, dtype=dtype), torch.randn(7, 6, 6, dtype=dtype), ref.all_weights,
            torch.randn(2, 6, 6, dtype=dtype), torch.randn(2, 6, 6, dtype=dtype))
    _compare(_forward_backward(ours, *args), _forward_backward(ref, *args), dtype)


# --------------------------------------------------------------------------- packed sequences


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("enforce_sorted,lengths", [
    (True, [5]), (False, [5]), (True, [10, 10, 6, 2, 2, 1, 1]), (False, [10, 10, 6, 2, 2, 1, 1]), (False, [2, 1, 3, 2, 10, 5, 3]),
])
def test_variable_sequence(dtype, enforce_sorted, lengths):
    """A packed batch gives each sequence what it gives alone: outputs, final states, gradients."""

    def pad(t, length):
        return t if t.size(0) == length else torch.cat([t, t.new_zeros(length - t.size(0), *t.size()[1:])])

    for use_default_hiddens, proj_size in itertools.product((True, False), (0, 2)):
        torch.manual_seed(0)
        input_size, hidden_size, num_layers, D = 3, 4, 2, 2
        max_length = max(lengths)
        x_leaf = torch.randn(max_length, len(lengths), input_size, dtype=dtype, requires_grad=True)
        lstm = lk.LSTM(input_size, hidden_size, bidirectional=True, num_layers=num_layers, proj_size=proj_size).to(dtype)
        lstm2 = copy.deepcopy(lstm)
        hidden0 = None
        if not use_default_hiddens:
            hidden0 = (torch.randn(D * num_layers, len(lengths), proj_size or hidden_size, dtype=dtype),
                       torch.randn(D * num_layers, len(lengths), hidden_size, dtype=dtype))
        seq_outs, seq_hiddens = [], []
        for i, n in enumerate(lengths):
            h_i = None if hidden0 is None else tuple(h[:, i:i + 1].contiguous() for h in hidden0)
            out, hid = lstm2(x_leaf[:n, i:i + 1], h_i)
            seq_outs.append(pad(out, max_length))
            seq_hiddens.append(hid)
        seq_out = torch.cat(seq_outs, 1)
        seq_hidden = tuple(torch.cat(h, 1) for h in zip(*seq_hiddens))

        packed = rnn_utils.pack_padded_sequence(x_leaf, lengths, enforce_sorted=enforce_sorted)
        packed_out, packed_hidden = lstm(packed, hidden0)
        unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)
        prec = PREC[dtype]
        for a, b in zip(packed_hidden, seq_hidden):
            torch.testing.assert_close(a, b, atol=prec, rtol=0)
        torch.testing.assert_close(unpacked, seq_out, atol=prec, rtol=0)
        assert unpacked_len.tolist() == list(lengths)

        seq_out.sum().backward()
        grad_x = x_leaf.grad.clone()
        x_leaf.grad.zero_()
        unpacked.sum().backward()
        torch.testing.assert_close(x_leaf.grad, grad_x, atol=prec, rtol=0)
        for p1, p2 in zip(lstm.parameters(), lstm2.parameters()):
            torch.testing.assert_close(p1.grad, p2.grad, atol=prec, rtol=0)


def test_packed_sequence_keeps_its_order_and_layout():
    """Not a port: PackedSequence in, PackedSequence out with the input's batch_sizes and sorting
    permutation, as torch.nn.LSTM gives them."""
    torch.manual_seed(0)
    ours, ref = twin("LSTM", 3, 4, num_layers=2, bidirectional=True, batch_first=True)
    seqs = [torch.randn(n, 3) for n in (2, 5, 3)]
    for packed in (rnn_utils.pack_sequence(seqs, enforce_sorted=False),
                   rnn_utils.pack_padded_sequence(rnn_utils.pad_sequence(seqs, batch_first=True), [2, 5, 3],
                                                  batch_first=True, enforce_sorted=False)):
        out, (h, c) = ours(packed)
        want, (h_w, c_w) = ref(packed)
        assert torch.equal(out.batch_sizes, want.batch_sizes)
        assert torch.equal(out.sorted_indices, want.sorted_indices) and torch.equal(out.unsorted_indices, want.unsorted_indices)
        torch.testing.assert_close(out.data, want.data)
        torch.testing.assert_close(h, h_w)
        torch.testing.assert_close(c, c_w)
        padded, lens = rnn_utils.pad_packed_sequence(out, batch_first=True, total_length=6)
        assert padded.shape == (3, 6, 8) and lens.tolist() == [2, 5, 3]


@pytest.mark.parametrize("sorted_lengths,shuffle", [([10, 8, 4, 2, 2, 2, 1], False), ([11, 10, 8, 6, 4, 3, 1], False),
                                                    ([11, 10, 8, 6, 4, 3, 1], True)])
@pytest.mark.parametrize("batch_first", [True, False])
def test_pack_padded_sequence(sorted_lengths, shuffle, batch_first):
    """test/nn/test_packed_sequence.py's cases (sorted and shuffled batches), fed through the
    module: packed in, packed out, equal to torch.nn.LSTM on the same PackedSequence and to
    lk.LSTM's own lengths= on the padded batch. (The rest of that file tests torch's packing
    utilities themselves, which lstmkit uses unchanged.)"""
    torch.manual_seed(0)
    ours, ref = twin("LSTM", 5, 4, num_layers=2, bidirectional=True, batch_first=batch_first)
    ours, ref = ours.double(), ref.double()
    lengths = torch.tensor(sorted_lengths)
    T, B = lengths.max().item(), len(sorted_lengths)
    padded = torch.randn(T, B, 5, dtype=torch.double)
    if shuffle:
        perm = torch.randperm(B)
        padded, lengths = padded.index_select(1, perm), lengths.index_select(0, perm)
    if batch_first:
        padded = padded.transpose(0, 1).contiguous()
    packed = rnn_utils.pack_padded_sequence(padded, lengths, batch_first=batch_first, enforce_sorted=not shuffle)
    out, (h, c) = ours(packed)
    want, (h_w, c_w) = ref(packed)
    torch.testing.assert_close(out.data, want.data, atol=PREC[torch.float64], rtol=0)
    torch.testing.assert_close(h, h_w, atol=PREC[torch.float64], rtol=0)
    torch.testing.assert_close(c, c_w, atol=PREC[torch.float64], rtol=0)
    by_lengths, (h_l, c_l) = ours(padded, lengths=lengths)
    unpacked, lens = rnn_utils.pad_packed_sequence(out, batch_first=batch_first)
    assert lens.tolist() == lengths.tolist()
    torch.testing.assert_close(unpacked, by_lengths, atol=PREC[torch.float64], rtol=0)
    torch.testing.assert_close(h_l, h, atol=PREC[torch.float64], rtol=0)


# --------------------------------------------------------------------------- cells


@pytest.mark.parametrize("bias", [True, False])
def test_LSTM_cell(bias):
    x, hx, cx = torch.randn(3, 10), torch.randn(3, 20), torch.randn(3, 20)
    lstm = lk.LSTMCell(10, 20, bias=bias)
    for _ in range(6):
        hx, cx = lstm(x, (hx, cx))
    (hx + cx).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lstm.parameters())


def test_LSTM_cell_forward_input_size():
    with pytest.raises(ValueError, match="input_size=10, got 11"):
        lk.LSTMCell(10, 20)(torch.randn(3, 11), (torch.randn(3, 20), torch.randn(3, 20)))


def test_LSTM_cell_forward_hidden_size():
    lstm, x, hx, cx = lk.LSTMCell(10, 20), torch.randn(3, 10), torch.randn(3, 21), torch.randn(3, 20)
    with pytest.raises(ValueError, match="h must have shape"):
        lstm(x, (hx, cx))
    with pytest.raises(ValueError, match="c must have shape"):
        lstm(x, (cx, hx))


def test_RNN_cell_no_broadcasting():
    hidden_size, input_size = 20, 10
    x, good = torch.randn(3, input_size), torch.randn(3, hidden_size)
    cell = lk.LSTMCell(input_size, hidden_size)
    for bad_hx in (torch.randn(1, hidden_size), torch.randn(3, 1)):  # batch, then hidden size
        for hx in ((bad_hx, good), (good, bad_hx)):
            with pytest.raises(ValueError, match="must have shape"):
                cell(x, hx)
    with pytest.raises(ValueError, match="input_size"):
        cell(torch.randn(3, 1), (good, good))


def test_RNN_cell_forward_zero_hidden_size():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
        lk.LSTMCell(10, 0)


def test_lstmcell_backward_only_one_output_grad():
    cell = lk.LSTMCell(2, 3).double()
    s = torch.randn(1, 2, dtype=torch.double, requires_grad=True)
    for i in range(2):
        cell(s)[i].sum().backward()
        assert s.grad is not None and s.grad.abs().sum().item() != 0


def test_LSTM_cell_matches_torch():
    """Not a port: lk.LSTMCell against torch.nn.LSTMCell with copied weights, batched and unbatched."""
    torch.manual_seed(0)
    ref = nn.LSTMCell(4, 5).double()
    ours = lk.LSTMCell(4, 5).double()
    ours.load_state_dict(ref.state_dict())
    x, hx = torch.randn(3, 4, dtype=torch.double), (torch.randn(3, 5, dtype=torch.double), torch.randn(3, 5, dtype=torch.double))
    for a, b in zip(ours(x, hx), ref(x, hx)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    for a, b in zip(ours(x[0], tuple(h[0] for h in hx)), ref(x[0], tuple(h[0] for h in hx))):  # unbatched
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("mode", ["RNN", "LSTM"])
def test_rnn_retain_variables(mode):
    rnn = LK[mode](10, 20, num_layers=2).double()
    x = torch.randn(5, 6, 10, dtype=torch.double, requires_grad=True)
    output = rnn(x)
    output[0].sum().backward(retain_graph=True)
    grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    for _ in range(4):
        rnn.zero_grad()
        x.grad.zero_()
        output[0].sum().backward(retain_graph=True)
        for a, b in zip(grads, [x.grad] + [p.grad for p in rnn.parameters()]):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def _flatten_out(mod, inp):
    out = mod(inp)
    return tuple(t if isinstance(t, torch.Tensor) else tt for t in out for tt in t)


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("bias", [True, False])
def test_LSTM_grad_and_gradgrad(backend, bias):
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 4, dtype=torch.double, requires_grad=True)
    mod = lk.LSTM(4, 4, bias=bias, backend=backend).double()
    torch.autograd.gradcheck(partial(_flatten_out, mod), inp, check_batched_grad=False)
    torch.autograd.gradgradcheck(partial(_flatten_out, mod), inp, check_batched_grad=False)


def test_LSTM_grad_and_gradgrad_fused_says_use_reference():
    inp = torch.rand(1, 3, 4, dtype=torch.double, requires_grad=True)
    mod = lk.LSTM(4, 4, backend="fused").double()
    torch.autograd.gradcheck(partial(_flatten_out, mod), inp, check_batched_grad=False)
    with pytest.raises(RuntimeError, match="no double backward.*backend='reference'"):
        torch.autograd.gradgradcheck(partial(_flatten_out, mod), inp, check_batched_grad=False)


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_LSTM_differentiable_backward_using_oneDNN(backend):
    """d(output)/d(input) with create_graph, then backward through it (torch's test compares oneDNN
    against its non-oneDNN path; here lk against torch.nn)."""
    torch.manual_seed(0)
    ours, ref = twin("LSTM", 3, 3, 2, batch_first=True)
    ours.backend = backend
    x = torch.rand(4, 5, 3)
    results = []
    for net in (ours, ref):
        xi = x.clone().requires_grad_(True)
        out, _ = net(xi)
        der = torch.autograd.grad(out, xi, grad_outputs=torch.ones_like(out), create_graph=True)[0]
        der.sum().backward()
        results.append((der.detach(), xi.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


# --------------------------------------------------------------------------- reparametrizations and weight lists


@pytest.mark.parametrize("name,num_params,kw", [("weight_ih_l0", 4, {}), ("weight_hr_l0", 5, {"proj_size": 16})])
def test_rnn_weight_norm(name, num_params, kw):
    m = lk.LSTM(32, 32, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated
        m = torch.nn.utils.weight_norm(m, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in m._flat_weights) == num_params - 1
        m = torch.nn.utils.remove_weight_norm(m, name=name)
    assert sum(isinstance(p, nn.Parameter) for p in m._flat_weights) == num_params
    assert name in m._parameters and m._parameters[name] is not None
    assert name + "_v" not in m._parameters and name + "_g" not in m._parameters
    assert name in dict(m.named_parameters()) and dict(m.named_parameters())[name] is not None


@pytest.mark.parametrize("name,kw", [("weight_hh_l0", {}), ("weight_hr_l0", {"proj_size": 3})])
def test_RNN_cudnn_weight_norm(name, kw):
    """The CPU half of torch's test: weight_norm and its removal leave the outputs unchanged."""
    torch.manual_seed(0)
    m = lk.LSTM(10, 6, 2, **kw)
    x = torch.randn(7, 6, 10)
    expected = m(x)[0].detach()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        m = torch.nn.utils.weight_norm(m, name=name)
        torch.testing.assert_close(m(x)[0], expected)
        m = torch.nn.utils.remove_weight_norm(m, name=name)
    torch.testing.assert_close(m(x)[0], expected)


def test_rnn_pruning():
    """test/nn/test_pruning.py: pruning turns one weight into a computed tensor; removal restores it."""
    torch.manual_seed(0)
    ours, ref = twin("LSTM", 32, 32)
    for m in (ours, ref):
        prune.l1_unstructured(m, "weight_ih_l0", 0.5)
    assert sum(isinstance(p, nn.Parameter) for p in ours._flat_weights) == 3
    x = torch.randn(4, 2, 32)
    torch.testing.assert_close(ours(x)[0], ref(x)[0])  # the pruned weight is the one that runs
    prune.remove(ours, "weight_ih_l0")
    assert sum(isinstance(p, nn.Parameter) for p in ours._flat_weights) == 4
    assert "weight_ih_l0" in ours._parameters and ours._parameters["weight_ih_l0"] is not None
    assert "weight_ih_l0_orig" not in ours._parameters
    assert "weight_ih_l0" in dict(ours.named_parameters())
    assert "weight_ih_l0_orig" not in dict(ours.named_parameters())


def test_partial_flat_weights():
    """Moving a module with a weight deleted (as reparametrizations do) works; assigning it back runs."""
    torch.manual_seed(0)
    m = lk.LSTM(10, 6, 2)
    x = torch.randn(3, 2, 10)
    expected = m(x)[0].detach()
    weight = m.weight_hh_l0
    del m.weight_hh_l0
    assert not hasattr(m, "weight_hh_l0")
    m.double().float()  # the CPU stand-in for torch's .cuda(): _apply with a weight missing
    m.weight_hh_l0 = weight
    torch.testing.assert_close(m(x)[0], expected)


# --------------------------------------------------------------------------- unbatched input


@pytest.mark.parametrize("mode,kw", [("LSTM", dict(num_layers=2, bidirectional=True)), ("LSTM", dict(proj_size=2)),
                                      ("RNN", dict(num_layers=2, bidirectional=True, nonlinearity="relu"))])
def test_no_batch_dim(mode, kw):
    """torch's module tests: an unbatched call equals the batched call with a batch of one."""
    torch.manual_seed(0)
    ours, ref = twin(mode, 3, 4, **kw)
    x = torch.randn(5, 3)
    got, want = ours(x), ref(x)
    batched = ours(x.unsqueeze(1))
    for a, b, c in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want),
                       torch.utils._pytree.tree_leaves(batched)):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c.squeeze(1))
