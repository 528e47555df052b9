"""lengths=: a right-padded batch gives each sequence exactly what it gives when run alone."""
from __future__ import annotations

import itertools

import pytest
import torch

import lstmkit as lk
from conftest import assert_close

LENGTHS = [5, 2, 7, 1]
T = max(LENGTHS)


@pytest.mark.parametrize("backend", ["reference", "native", "auto"])
@pytest.mark.parametrize("layers,bidir,proj,with_hx", list(itertools.product([1, 2], [False, True], [0, 3], [False, True])))
def test_padded_batch_equals_each_sequence_alone(backend, layers, bidir, proj, with_hx):
    dtype = torch.float64
    torch.manual_seed(0)
    lstm = lk.LSTM(4, 5, num_layers=layers, bidirectional=bidir, proj_size=proj, backend=backend).to(dtype)
    D, P = (2 if bidir else 1), proj or 5
    seqs = [torch.randn(n, 4, dtype=dtype, requires_grad=True) for n in LENGTHS]
    h0 = torch.randn(layers * D, len(seqs), P, dtype=dtype, requires_grad=True) if with_hx else None
    c0 = torch.randn(layers * D, len(seqs), 5, dtype=dtype, requires_grad=True) if with_hx else None
    padded = torch.nn.utils.rnn.pad_sequence(seqs)  # (T, B, 4), zeros past each length
    out, (h_n, c_n) = lstm(padded, (h0, c0) if with_hx else None, lengths=torch.tensor(LENGTHS))
    loss_batch = (out ** 2).sum() + (h_n ** 3).sum() + c_n.sum()
    params = list(lstm.parameters())
    g_batch = torch.autograd.grad(loss_batch, seqs + params + ([h0, c0] if with_hx else []))

    loss_alone = 0
    for b, (n, x) in enumerate(zip(LENGTHS, seqs)):
        hx = (h0[:, b : b + 1], c0[:, b : b + 1]) if with_hx else None
        o, (h, c) = lstm(x.unsqueeze(1), hx)
        assert_close(out[:n, b], o[:, 0], dtype, f"output of sequence {b}")
        assert torch.all(out[n:, b] == 0), "outputs past the length must be zero"
        assert_close(h_n[:, b], h[:, 0], dtype, f"h_n of sequence {b}")
        assert_close(c_n[:, b], c[:, 0], dtype, f"c_n of sequence {b}")
        loss_alone = loss_alone + (o ** 2).sum() + (h ** 3).sum() + c.sum()
    g_alone = torch.autograd.grad(loss_alone, seqs + params + ([h0, c0] if with_hx else []))
    for a, b in zip(g_batch, g_alone):
        assert_close(a, b, dtype, "gradient")


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_lengths_with_batch_first_and_list(backend):
    torch.manual_seed(1)
    lstm = lk.LSTM(3, 4, batch_first=True, backend=backend).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    out, (h, _) = lstm(x, lengths=[6, 3])
    alone, (h1, _) = lstm(x[1:, :3])
    assert_close(out[1, :3], alone[0], torch.float64, "output")
    assert_close(h[:, 1], h1[:, 0], torch.float64, "h_n")
    assert torch.all(out[1, 3:] == 0)


def test_full_lengths_equal_no_lengths():
    lstm = lk.LSTM(3, 4, bidirectional=True)
    x = torch.randn(5, 2, 3)
    a, b = lstm(x, lengths=torch.tensor([5, 5])), lstm(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1][0], b[1][0])
