"""Plain containers passed between the modules (lstmkit.lstm, lstmkit.rnn) and the kernels.

Shape legend used throughout the kernels:
    T = time steps, B = batch, I = input features of the layer,
    H = hidden size (cell and gates), P = size of h (proj_size if > 0, else H),
    L = layers, D = directions (1 or 2).

Kernels always see time-major tensors: x is (T, B, I).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from torch import Tensor


class LayerNormParams(NamedTuple):
    """Gains and biases of the three layer normalizations of a LayerNorm LSTM layer."""

    ih_weight: Tensor  # (GH,) on the input projection x W_ih^T
    ih_bias: Tensor  # (GH,)
    hh_weight: Tensor  # (GH,) on the recurrent projection h W_hh^T
    hh_bias: Tensor  # (GH,)
    c_weight: Tensor  # (H,) on the cell state before its tanh
    c_bias: Tensor  # (H,)


class LSTMLayerParams(NamedTuple):
    """The weights of one layer in one direction, named and shaped as in torch.nn.LSTM.

    G = 4 gates (i, f, g, o), or 3 (i, g, o) for the coupled variant whose f is 1 - i.
    """

    w_ih: Tensor  # (GH, I)   rows in gate order i, f, g, o (coupled: i, g, o)
    w_hh: Tensor  # (GH, P)
    b_ih: Optional[Tensor]  # (GH,) or None when bias=False
    b_hh: Optional[Tensor]  # (GH,) or None
    w_hr: Optional[Tensor]  # (P, H) or None when proj_size == 0
    peephole: Optional[Tensor] = None  # (3, H) diagonal weights for i, f, o (coupled: (2, H) for i, o)
    ln: Optional[LayerNormParams] = None


class LSTMStepOptions(NamedTuple):
    """Per-call options of the LSTM variants that a kernel applies inside its step loop.

    Masks are sampled by the module (so every backend sees the same ones); None means off.
    """

    coupled: bool = False  # f = 1 - i (CIFG)
    ln_eps: float = 1e-5
    h_keep: Optional[Tensor] = None  # (B, P) recurrent-dropout mask on h_{t-1}, pre-scaled by 1/(1-p)
    # Zoneout: weight of the previous value, 1 (True) keeps it. bool (the module's training
    # samples), floating point, or a stride-0 expansion of one rate (eval mode).
    zone_h: Optional[Tensor] = None  # (T, B, P) of h
    zone_c: Optional[Tensor] = None  # (T, B, H) of c


class RNNLayerParams(NamedTuple):
    """The weights of one layer in one direction of a plain (Elman) RNN, as in torch.nn.RNN."""

    w_ih: Tensor  # (H, I)
    w_hh: Tensor  # (H, H)
    b_ih: Optional[Tensor]  # (H,) or None
    b_hh: Optional[Tensor]  # (H,) or None


class LSTMGates(NamedTuple):
    """Every step's gates and states: the values the computation used, not a re-computation.

    A kernel returns them for one layer and direction, each (T, B, ·). ``lk.LSTM(...,
    return_gates=True)`` returns them stacked over layers and directions:
    (L, D, T, B, ·) time-major, (L, D, B, T, ·) with batch_first, (L, D, T, ·) for unbatched
    input. Steps past a sequence's length hold zeros. Index 1 of D is the reverse direction.
    """

    i: Tensor  # (T, B, H) input gate
    f: Tensor  # (T, B, H) forget gate
    g: Tensor  # (T, B, H) input node (candidate cell value)
    o: Tensor  # (T, B, H) output gate
    c: Tensor  # (T, B, H) memory cell internal state
    h: Tensor  # (T, B, P) hidden state (after the projection when proj_size > 0)

    def layer(self, k: int, direction: int = 0) -> "LSTMGates":
        """The gates of layer k (0-based) and one direction, from a stacked (L, D, ...) result."""
        return LSTMGates(*(v[k, direction] for v in self))


class RNNStates(NamedTuple):
    """Every step's hidden state of a plain RNN; shapes as for LSTMGates."""

    h: Tensor  # (T, B, H)
