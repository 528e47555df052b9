"""A sequence classifier: lk.LSTM over right-padded sequences, pooled by length, then a linear head.

Shapes: B batch, T padded length, F features, H hidden size, D directions (1 or 2), C classes.

Pooling turns the LSTM's outputs h_1 … h_T (each D·H) into one vector per sequence, looking
only at steps t < length, so a sequence padded with anything gives the same result as alone:

    last        forward h at step length-1 (‖ backward h at step 0 when bidirectional)
    mean        (1/length) Σ_{t<length} h_t
    max         max_{t<length} h_t, per feature
    attention   Σ_{t<length} a_t h_t,  a = softmax_t(vᵀ tanh(W h_t + b)) over valid steps only
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..._masking import length_mask
from ...lstm import LSTM

POOLINGS = ("last", "mean", "max", "attention")


def pool_last(out: Tensor, lengths: Tensor, bidirectional: bool) -> Tensor:
    """out (B, T, D·H) → (B, D·H): forward half at step length-1, backward half at step 0."""
    B, T, DH = out.shape
    idx = (lengths - 1).clamp(min=0).view(B, 1, 1).expand(B, 1, DH)  # (B, 1, D·H)
    last = out.gather(1, idx).squeeze(1)  # (B, D·H)
    if not bidirectional:
        return last
    H = DH // 2
    return torch.cat([last[:, :H], out[:, 0, H:]], dim=1)  # the reverse direction ends at t = 0


def pool_mean(out: Tensor, lengths: Tensor) -> Tensor:
    mask = length_mask(lengths, out.shape[1]).unsqueeze(-1).to(out.dtype)  # (B, T, 1)
    return (out * mask).sum(1) / lengths.to(out.dtype).unsqueeze(1)


def pool_max(out: Tensor, lengths: Tensor) -> Tensor:
    mask = length_mask(lengths, out.shape[1]).unsqueeze(-1)  # (B, T, 1)
    return out.masked_fill(~mask, float("-inf")).amax(1)


class AttentionPool(nn.Module):
    """Additive attention over the valid steps: a = softmax(vᵀ tanh(W h_t + b)), pooled Σ a_t h_t."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(size, size)
        self.score = nn.Linear(size, 1, bias=False)

    def weights(self, out: Tensor, lengths: Tensor) -> Tensor:
        """(B, T) attention weights, exactly 0 past each length."""
        s = self.score(torch.tanh(self.proj(out))).squeeze(-1)  # (B, T)
        s = s.masked_fill(~length_mask(lengths, out.shape[1]), float("-inf"))
        return torch.softmax(s, dim=1)

    def forward(self, out: Tensor, lengths: Tensor) -> Tensor:
        return torch.einsum("bt,btd->bd", self.weights(out, lengths), out)


class SequenceClassifier(nn.Module):
    """lk.LSTM → length-aware pooling → dropout → Linear(D·H, C).

    Args (defaults in brackets):
        input_size: F. num_classes: C.
        hidden_size [64], num_layers [1], bidirectional [False]: the LSTM.
        pooling ["last"]: one of POOLINGS (see the module docstring).
        dropout [0.0]: between LSTM layers and on the pooled vector, in training.
        feature_mean, feature_std: (F,) standardization applied to the input (kept as buffers
            so a saved model carries it); default 0 and 1.
        backend ["auto"] and any other keyword: passed to lk.LSTM (the ``[lstm]`` section's variants:
            layer_norm, proj_size, ...; with proj_size the pooled vector is D·proj_size).

    forward(x (B, T, F), lengths (B,) or None = all T) → logits (B, C).

    Example:
        >>> import torch
        >>> m = SequenceClassifier(12, 9, hidden_size=16, pooling="mean")
        >>> m(torch.randn(3, 20, 12), torch.tensor([20, 7, 12])).shape
        torch.Size([3, 9])
    """

    def __init__(self, input_size: int, num_classes: int, hidden_size: int = 64, num_layers: int = 1,
                 bidirectional: bool = False, pooling: str = "last", dropout: float = 0.0,
                 feature_mean: Optional[Tensor] = None, feature_std: Optional[Tensor] = None,
                 backend: str = "auto", **lstm_kwargs) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.pooling, self.bidirectional = pooling, bidirectional
        self.lstm = LSTM(input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional,
                         dropout=dropout if num_layers > 1 else 0.0, backend=backend, **lstm_kwargs)
        size = self.lstm.state_size * (2 if bidirectional else 1)  # D·P
        self.attention = AttentionPool(size) if pooling == "attention" else None
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(size, num_classes)
        mean = torch.zeros(input_size) if feature_mean is None else torch.as_tensor(feature_mean, dtype=torch.float32)
        std = torch.ones(input_size) if feature_std is None else torch.as_tensor(feature_std, dtype=torch.float32)
        self.register_buffer("feature_mean", mean.clone())
        self.register_buffer("feature_std", std.clone())

    def features(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """The pooled vector (B, D·H) of each sequence."""
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int64)
        lengths = lengths.to(torch.int64)
        x = (x - self.feature_mean) / self.feature_std
        x = x * length_mask(lengths.to(x.device), T).unsqueeze(-1).to(x.dtype)  # padding stays 0
        out, _ = self.lstm(x, lengths=lengths.cpu())  # (B, T, D·H), zero past each length
        lengths = lengths.to(out.device)
        if self.pooling == "last":
            return pool_last(out, lengths, self.bidirectional)
        if self.pooling == "mean":
            return pool_mean(out, lengths)
        if self.pooling == "max":
            return pool_max(out, lengths)
        return self.attention(out, lengths)

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        return self.head(self.drop(self.features(x, lengths)))
