"""lk.LSTM: a drop-in for torch.nn.LSTM that can also show every gate of every step."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from ._recurrent import RecurrentBase
from .kernels import LSTMGates, LSTMLayerParams

DEFAULT_FORGET_BIAS = 1.0


class LSTMResult(NamedTuple):
    """What ``LSTM(..., return_gates=True)`` returns; unpacks as (output, (h_n, c_n), gates)."""

    output: Union[Tensor, PackedSequence]
    state: tuple[Tensor, Tensor]
    gates: LSTMGates


class LSTM(RecurrentBase):
    r"""Multi-layer Long Short-Term Memory network with torch.nn.LSTM's signature and contract.

    Each layer, each direction, each step t computes (textbook name → code letter)::

        input gate      i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        forget gate     f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        input node      g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   (candidate C̃_t)
        output gate     o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        memory cell     c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        hidden state    h_t = o_t ⊙ tanh(c_t)        (h_t = W_hr (o_t ⊙ tanh(c_t)) with proj_size > 0)

    Args (as torch.nn.LSTM):
        input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0
        (between layers, in training), bidirectional=False, proj_size=0, device=None, dtype=None.
    Keyword-only, beyond torch.nn.LSTM:
        forget_bias (float or None, default 1.0): initial forget-gate bias. bias_ih's forget
            rows start at this value and bias_hh's at 0, so the gate starts mostly open and the
            cell remembers from the first update (Jozefowicz et al. 2015; Gers et al. 2000).
            None keeps torch's uniform initialization untouched.
        backend ("auto" | "reference" | "native" | "fused"): "reference" is a readable loop
            over steps with autograd (any device); "native" is torch's own kernel (oneDNN /
            cuDNN) for plain runs; "auto" picks the fastest one that supports the call.

    Forward: ``lstm(input, hx=None, *, lengths=None, return_gates=False)``
        input: (T, B, I), (B, T, I) with batch_first, (T, I) unbatched, or a PackedSequence.
        hx: optional (h0, c0), h0 (L·D, B, P), c0 (L·D, B, H) (no B for unbatched input).
        lengths: optional (B,) ints in [1, T] for right-padded batches: outputs past each length
            are zero and (h_n, c_n) are each sequence's own last step; the reverse direction
            starts at that step.
        return_gates: also return every step's i, f, g, o, c, h (see LSTMGates for shapes).

    Returns ``(output, (h_n, c_n))`` exactly as torch.nn.LSTM — output (T, B, D·P) — or, with
    return_gates, an LSTMResult ``(output, (h_n, c_n), gates)``.

    Example:
        >>> import lstmkit as lk, torch
        >>> lstm = lk.LSTM(8, 16, num_layers=2, batch_first=True)
        >>> out, (h, c) = lstm(torch.randn(4, 10, 8))
        >>> out.shape, h.shape
        (torch.Size([4, 10, 16]), torch.Size([2, 4, 16]))
        >>> lstm(torch.randn(4, 10, 8), return_gates=True).gates.f.shape   # (L, D, B, T, H)
        torch.Size([2, 1, 4, 10, 16])
    """

    _gate_count = 4
    _state_names = ("h0", "c0")
    _params_type = LSTMLayerParams

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
        *,
        forget_bias: Optional[float] = DEFAULT_FORGET_BIAS,
        backend: str = "auto",
    ) -> None:
        if forget_bias is not None and (isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float))):
            raise ValueError(f"forget_bias must be a number or None, got {forget_bias!r}")
        self.forget_bias = None if forget_bias is None else float(forget_bias)
        super().__init__(
            "lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            proj_size, device, dtype, backend,
        )

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is None or not self.bias:
            return
        H = self.hidden_size
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("bias_ih"):
                    p[H : 2 * H].fill_(self.forget_bias)  # rows of f in gate order i, f, g, o
                elif name.startswith("bias_hh"):
                    p[H : 2 * H].zero_()

    def forward(self, input, hx=None, *, lengths=None, return_gates: bool = False):
        out, (h_n, c_n), gates = self._run(input, hx, lengths, record=return_gates)
        if return_gates:
            return LSTMResult(out, (h_n, c_n), gates)
        return out, (h_n, c_n)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.forget_bias != DEFAULT_FORGET_BIAS:
            s += f", forget_bias={self.forget_bias}"
        return s
