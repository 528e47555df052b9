"""The sequence classifier: padding invariance and length-aware pooling."""
from __future__ import annotations

import pytest
import torch

from lstmkit.apps.classify.model import (POOLINGS, AttentionPool, SequenceClassifier, length_mask, pool_last,
                                         pool_max, pool_mean)

# Batched and one-at-a-time runs do the same float32 maths on different GEMM shapes: a few ulps.
ATOL = 1e-5

LENGTHS = [9, 3, 1, 6]  # includes length 1 and the full length T = 9


def _padded_batch(F: int = 5, garbage: float = 1e3, seed: int = 0):
    """x (B, T, F) with large garbage past each length, the lengths, and each sequence alone."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(LENGTHS)
    T = int(lengths.max())
    x = torch.randn(len(LENGTHS), T, F, generator=g)
    alone = [x[b, :n].clone() for b, n in enumerate(LENGTHS)]
    mask = length_mask(lengths, T).unsqueeze(-1)
    x = torch.where(mask, x, torch.full_like(x, garbage))
    return x, lengths, alone


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_batch_gives_each_sequence_alone(pooling, bidirectional, backend):
    torch.manual_seed(0)
    model = SequenceClassifier(5, 4, hidden_size=7, num_layers=2, bidirectional=bidirectional,
                               pooling=pooling, backend=backend,
                               feature_mean=torch.randn(5), feature_std=torch.rand(5) + 0.5).eval()
    x, lengths, alone = _padded_batch()
    with torch.no_grad():
        batched = model(x, lengths)
        for b, seq in enumerate(alone):
            single = model(seq.unsqueeze(0), torch.tensor([len(seq)]))
            torch.testing.assert_close(batched[b:b + 1], single, atol=ATOL, rtol=ATOL,
                                       msg=lambda m: f"sequence {b} (length {len(seq)}): {m}")
    # And the padding value matters nowhere: different garbage, same logits.
    with torch.no_grad():
        other = model(_padded_batch(garbage=-7.0)[0], lengths)
    torch.testing.assert_close(batched, other, atol=ATOL, rtol=ATOL)


def _out_with_garbage(B=3, T=6, D=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(B, T, D, generator=g)
    lengths = torch.tensor([6, 2, 4])
    mask = length_mask(lengths, T).unsqueeze(-1)
    return torch.where(mask, out, torch.full_like(out, 50.0)), lengths


def test_pool_mean_and_max_use_valid_steps_only():
    out, lengths = _out_with_garbage()
    mean, mx = pool_mean(out, lengths), pool_max(out, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(mean[b], out[b, :n].mean(0))
        torch.testing.assert_close(mx[b], out[b, :n].amax(0))
    assert (mx < 50).all(), "max pooling picked up the padding"


def test_pool_last_picks_length_minus_one_and_reverse_start():
    out, lengths = _out_with_garbage()
    uni = pool_last(out, lengths, bidirectional=False)
    bi = pool_last(out, lengths, bidirectional=True)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(uni[b], out[b, n - 1])
        torch.testing.assert_close(bi[b, :2], out[b, n - 1, :2])  # forward half: last valid step
        torch.testing.assert_close(bi[b, 2:], out[b, 0, 2:])  # backward half: its last step is t = 0


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_pooling_equals_the_lstm_final_state(bidirectional):
    torch.manual_seed(3)
    model = SequenceClassifier(5, 3, hidden_size=6, num_layers=2, bidirectional=bidirectional,
                               pooling="last", backend="reference").eval()
    x, lengths, _ = _padded_batch()
    with torch.no_grad():
        pooled = model.features(x, lengths)
        xn = (x - model.feature_mean) / model.feature_std
        _, (h_n, _) = model.lstm(xn, lengths=lengths)
    D = 2 if bidirectional else 1
    expected = torch.cat(list(h_n[-D:]), dim=1)  # last layer's directions → (B, D·H)
    torch.testing.assert_close(pooled, expected, atol=ATOL, rtol=ATOL)


def test_attention_weights_vanish_past_length_and_sum_to_one():
    torch.manual_seed(0)
    att = AttentionPool(4)
    out, lengths = _out_with_garbage()
    w = att.weights(out, lengths)
    mask = length_mask(lengths, out.shape[1])
    assert (w[~mask] == 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(3))
    pooled = att(out, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(pooled[b:b + 1], att(out[b:b + 1, :n], lengths[b:b + 1]))


def test_constructor_rejects_bad_pooling():
    with pytest.raises(ValueError, match="pooling must be one of .*got 'first'"):
        SequenceClassifier(3, 2, pooling="first")
