"""lk.LSTMCell: one step of the LSTM, with torch.nn.LSTMCell's parameters and contract."""
from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from . import _checks as check
from ._masking import zoneout_blend
from ._torch_compat import NotScriptable
from ._torch_quantize import DynamicQuantizable
from ._tracing import values_hidden
from .kernels import LSTMLayerParams, reference
from .kernels.types import LayerNormParams, LSTMStepOptions
from .kernels.masks import zoneout_mask
from .options import DEFAULT_FORGET_BIAS, LSTMOptions, OptionAttributes


class LSTMCell(OptionAttributes, NotScriptable, DynamicQuantizable, nn.Module):
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
        input_size, hidden_size, bias=True, device=None, dtype=None (as torch.nn.LSTMCell).
        Keyword-only, as in lk.LSTM (see its docstring for the equations and parameter names,
        here without the ``_l{k}`` suffix): forget_bias=1.0, peephole=False, coupled=False,
        layer_norm=False, layer_norm_eps=1e-5, zoneout=0.0 (float or (z_c, z_h); a fresh mask
        every call in training, the expectation in eval). Per-sequence dropout masks need the
        whole sequence: use lk.LSTM's recurrent_dropout.

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

    _torch_counterpart = nn.LSTMCell  # what quantize_dynamic's spec names for it

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None, dtype: Any = None,
        *, forget_bias: Optional[float] = DEFAULT_FORGET_BIAS, peephole: bool = False, coupled: bool = False,
        layer_norm: bool = False, layer_norm_eps: float = 1e-5, zoneout: Union[float, tuple[float, float]] = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = check.positive_int("input_size", input_size)
        self.hidden_size = check.positive_int("hidden_size", hidden_size)
        self.bias = bool(bias)
        self.options = LSTMOptions(forget_bias=forget_bias, peephole=peephole, coupled=coupled, layer_norm=layer_norm,
                                   layer_norm_eps=layer_norm_eps, zoneout=zoneout)
        factory = {"device": device, "dtype": dtype}
        H, G = hidden_size, self.options.gates
        self.weight_ih = nn.Parameter(torch.empty(G * H, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(G * H, H, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G * H, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G * H, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if not peephole:
            self.weight_peephole = None
        for name, shape in self.options.extra_param_shapes(H).items():  # weight_peephole, ln_*
            self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn.LSTMCell's uniform draw, then the options' starting values (LSTMOptions.initial_value)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for w in self.parameters():
                w.uniform_(-bound, bound)
            for name, p in self.named_parameters():
                init = self.options.initial_value(name, self.hidden_size)
                if init is not None:
                    p[init[0]].fill_(init[1])

    def forward(self, input: Tensor, hx: Optional[tuple[Tensor, Tensor]] = None, *, return_gates: bool = False):
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"input must be 2-D (batch, input_size) or 1-D (input_size,), got shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input's last dimension must be input_size={self.input_size}, got {input.shape[-1]}")
        check.same_dtype_device("input", input, self.weight_ih)
        if not values_hidden(input):
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
        ln = None
        if self.layer_norm:
            ln = LayerNormParams(*(getattr(self, f"ln_{p}_{k}") for p in ("ih", "hh", "c") for k in ("weight", "bias")))
        params = LSTMLayerParams(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None, self.weight_peephole, ln)
        opts = LSTMStepOptions(coupled=self.coupled, ln_eps=self.layer_norm_eps)
        x_proj = reference.input_projection(x.unsqueeze(0), params, opts.ln_eps)[0]  # (B, GH)
        h_new, c_new, gates = reference.lstm_cell_step(x_proj, h, c, params, opts)
        h_new, c_new = self._zoneout(h, h_new, self.zoneout_h), self._zoneout(c, c_new, self.zoneout_c)
        if not batched:
            h_new, c_new, gates = h_new.squeeze(0), c_new.squeeze(0), tuple(v.squeeze(0) for v in gates)
        return ((h_new, c_new), gates) if return_gates else (h_new, c_new)

    def _zoneout(self, prev: Tensor, new: Tensor, z: float) -> Tensor:
        """Keep each unit's previous value with probability z in training (the same mask generator
        as lk.LSTM's); the expectation z in eval."""
        if z == 0:
            return new
        return zoneout_blend(new, prev, zoneout_mask(tuple(new.shape), z, new) if self.training else z)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
        for name, on in (("peephole", self.weight_peephole is not None), ("coupled", self.coupled), ("layer_norm", self.layer_norm)):
            s += f", {name}=True" if on else ""
        return s
