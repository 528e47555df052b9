"""lk.LSTMCell: one step of the LSTM, with torch.nn.LSTMCell's parameters and contract."""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _checks as check
from .kernels import LSTMLayerParams, reference
from .lstm import DEFAULT_FORGET_BIAS


class LSTMCell(nn.Module):
    r"""One step of the Long Short-Term Memory cell.

    ==============================  =====  ================================================
    textbook                        code   equation
    ==============================  =====  ================================================
    input gate I_t                  ``i``  σ(X_t W_xi + H_{t-1} W_hi + b_i)
    forget gate F_t                 ``f``  σ(X_t W_xf + H_{t-1} W_hf + b_f)
    output gate O_t                 ``o``  σ(X_t W_xo + H_{t-1} W_ho + b_o)
    input node C̃_t (candidate)      ``g``  tanh(X_t W_xc + H_{t-1} W_hc + b_c)
    memory cell internal state C_t  ``c``  F_t ⊙ C_{t-1} + I_t ⊙ C̃_t
    hidden state H_t                ``h``  O_t ⊙ tanh(C_t)
    ==============================  =====  ================================================

    Parameters as torch.nn.LSTMCell: weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H),
    bias_hh (4H), rows in gate order (i, f, g, o); each b above is bias_ih + bias_hh.

    Args:
        input_size, hidden_size, bias=True, device=None, dtype=None (as torch.nn.LSTMCell);
        forget_bias (keyword, default 1.0; None keeps torch's init): see lk.LSTM.

    Forward: ``cell(x, hx=None, *, return_gates=False)`` with x (B, I) or (I,), hx = (h, c)
    each (B, H) or (H,), zeros when omitted. Returns (h_t, c_t); with return_gates,
    ((h_t, c_t), (i, f, g, o)).

    Example:
        >>> import lstmkit as lk, torch
        >>> cell = lk.LSTMCell(3, 4)
        >>> h, c = cell(torch.randn(2, 3))
        >>> h, c = cell(torch.randn(2, 3), (h, c))
        >>> h.shape
        torch.Size([2, 4])
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None, dtype: Any = None,
        *, forget_bias: Optional[float] = DEFAULT_FORGET_BIAS,
    ) -> None:
        super().__init__()
        self.input_size = check.positive_int("input_size", input_size)
        self.hidden_size = check.positive_int("hidden_size", hidden_size)
        self.bias = bool(bias)
        self.forget_bias = forget_bias
        factory = {"device": device, "dtype": dtype}
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * H, **factory))
            self.bias_hh = nn.Parameter(torch.empty(4 * H, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        H = self.hidden_size
        with torch.no_grad():
            for w in self.parameters():
                w.uniform_(-bound, bound)
            if self.bias and self.forget_bias is not None:
                self.bias_ih[H : 2 * H].fill_(self.forget_bias)
                self.bias_hh[H : 2 * H].zero_()

    def forward(self, input: Tensor, hx: Optional[tuple[Tensor, Tensor]] = None, *, return_gates: bool = False):
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"input must be 2-D (batch, input_size) or 1-D (input_size,), got shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input's last dimension must be input_size={self.input_size}, got {input.shape[-1]}")
        check.same_dtype_device("input", input, self.weight_ih)
        check.finite("input", input)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        B, H = x.shape[0], self.hidden_size
        if B == 0:
            raise ValueError("input has an empty batch (batch size 0)")
        if hx is None:
            h = c = torch.zeros(B, H, dtype=x.dtype, device=x.device)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx must be a tuple (h, c), got {type(hx).__name__}")
            expected = (B, H) if batched else (H,)
            h, c = (check.state_tensor(n, t, expected, self.weight_ih) for n, t in zip(("h", "c"), hx))
            h, c = (h, c) if batched else (h.unsqueeze(0), c.unsqueeze(0))
        params = LSTMLayerParams(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None)
        h, c, gates = reference.lstm_cell_step(F.linear(x, self.weight_ih, self.bias_ih), h, c, params)
        if not batched:
            h, c, gates = h.squeeze(0), c.squeeze(0), tuple(v.squeeze(0) for v in gates)
        return ((h, c), gates) if return_gates else (h, c)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
