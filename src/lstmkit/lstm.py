"""lk.LSTM: a drop-in for torch.nn.LSTM that can also show every gate of every step."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from . import _checks as check
from ._recurrent import RecurrentBase, _base_name
from ._torch_compat import RNNBaseCompat
from ._torch_quantize import DynamicQuantizable
from .decoding import LSTMDecoder
from .kernels import LSTMGates, LSTMLayerParams
from .kernels.masks import zoneout_mask
from .kernels.types import LayerNormParams, LSTMStepOptions
from .options import DEFAULT_FORGET_BIAS, LSTMOptions, OptionAttributes


class LSTMResult(NamedTuple):
    """What ``LSTM(..., return_gates=True)`` returns; unpacks as (output, (h_n, c_n), gates)."""

    output: Union[Tensor, PackedSequence]
    state: tuple[Tensor, Tensor]
    gates: LSTMGates


class LSTM(OptionAttributes, RNNBaseCompat, DynamicQuantizable, RecurrentBase):
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

    Variants (keyword-only; all off by default, any combination allowed):
        peephole=False: i and f also see c_{t-1}, o sees c_t, through diagonal weights
            (Gers, Schraudolph & Schmidhuber 2002; ONNX LSTM's P input):
            i_t = σ(… + p_i ⊙ c_{t-1}), f_t = σ(… + p_f ⊙ c_{t-1}), o_t = σ(… + p_o ⊙ c_t).
            Parameter ``weight_peephole_l{k}[_reverse]`` (3, H), rows i, f, o ((2, H), rows i, o,
            when coupled).
        coupled=False: coupled input-forget gate (CIFG, Greff et al. 2017): f_t = 1 - i_t and the
            forget-gate rows are gone: weight_ih (3H, I), weight_hh (3H, P), biases (3H,) in gate
            order i, g, o. forget_bias then starts i's bias at -forget_bias, so f = σ(forget_bias).
        layer_norm=False: LayerNorm LSTM (Ba, Kiros & Hinton 2016). Exactly these three terms are
            normalized, each over its whole feature vector, each with its own gain and bias:
                pre_t = LN_ih(x_t W_ih^T) + b_ih + LN_hh(h_{t-1} W_hh^T) + b_hh     (GH features)
                h_t   = o_t ⊙ tanh(LN_c(c_t))                                      (H features)
            c_t itself (the carried state) is not normalized. Parameters ``ln_ih_weight_l{k}``,
            ``ln_ih_bias_l{k}``, ``ln_hh_weight_l{k}``, ``ln_hh_bias_l{k}`` (GH,) and
            ``ln_c_weight_l{k}``, ``ln_c_bias_l{k}`` (H,), with ``_reverse`` for direction 2;
            gains start at 1, biases at 0. ``layer_norm_eps=1e-5``.
        zoneout=0.0: zoneout (Krueger et al. 2016) on c and h: each unit keeps its previous value
            with probability z — c_t = d ⊙ c_{t-1} + (1 - d) ⊙ c̃_t, d ~ Bernoulli(z) per step —
            in training; in eval d is replaced by its expectation z. A float applies to both, a
            pair (z_c, z_h) sets them apart. Recorded gates' c and h are the zoned-out states.
        recurrent_dropout=0.0: variational dropout (Gal & Ghahramani 2016) on h_{t-1} in the
            recurrent projection: one mask per sequence and layer, the same at every step.
        input_dropout=0.0: the same kind of per-sequence mask on every layer's input x_t.
        weight_drop=0.0: DropConnect on weight_hh (Merity et al. 2017, AWD-LSTM): a fresh mask
            on the recurrent weights per forward call, in training.
        Dropout masks are drawn from torch's global generator, before the backend runs, so a
        fixed seed gives the same masks on every backend. All are identity in eval except zoneout.

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
    _torch_counterpart = torch.nn.LSTM  # what quantize_dynamic's spec names for it

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
        peephole: bool = False,
        coupled: bool = False,
        layer_norm: bool = False,
        layer_norm_eps: float = 1e-5,
        zoneout: Union[float, tuple[float, float]] = 0.0,
        recurrent_dropout: float = 0.0,
        input_dropout: float = 0.0,
        weight_drop: float = 0.0,
        backend: str = "auto",
    ) -> None:
        self.options = LSTMOptions(
            forget_bias=forget_bias, peephole=peephole, coupled=coupled, layer_norm=layer_norm,
            layer_norm_eps=layer_norm_eps, zoneout=zoneout, recurrent_dropout=recurrent_dropout,
            input_dropout=input_dropout, weight_drop=weight_drop,
        )
        self._gate_count = self.options.gates
        super().__init__(
            "lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            proj_size, device, dtype, backend,
        )

    def __setstate__(self, state: dict) -> None:
        # modules pickled before LSTMOptions kept each option as an attribute of its own
        if "options" not in state:
            old = {k: state.pop(k) for k in list(state) if k in LSTMOptions.names() + ("zoneout_c", "zoneout_h")}
            if "zoneout_c" in old:
                old["zoneout"] = (old.pop("zoneout_c"), old.pop("zoneout_h"))
            state["options"] = LSTMOptions(**old)
        super().__setstate__(state)

    def _extra_param_shapes(self, sfx: str) -> dict[str, tuple[int, ...]]:
        return self.options.extra_param_shapes(self.hidden_size, sfx)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            for name, p in self.named_parameters():
                init = self.options.initial_value(_base_name(name), self.hidden_size)
                if init is not None:
                    p[init[0]].fill_(init[1])

    def _make_layer_params(self, named: dict) -> LSTMLayerParams:
        w_hh = named["weight_hh"]
        if self.weight_drop and self.training:
            w_hh = w_hh * _keep_mask(w_hh.shape, self.weight_drop, w_hh)  # DropConnect, fresh per call
        ln = None
        if self.layer_norm:
            ln = LayerNormParams(*(named[f"ln_{part}_{kind}"] for part in ("ih", "hh", "c") for kind in ("weight", "bias")))
        return LSTMLayerParams(
            named["weight_ih"], w_hh, named.get("bias_ih"), named.get("bias_hh"), named.get("weight_hr"),
            named.get("weight_peephole"), ln,
        )

    def _variants(self) -> tuple[str, ...]:
        return self.options.active(self.training)

    def _step_options(self, T: int, B: int, like: Tensor):
        if not self._variants():
            return None, None
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self.state_size
        train = self.training

        def zone(z: float, size: int) -> Optional[Tensor]:
            if z == 0:
                return None
            if train:  # True keeps the previous value, with probability z
                return zoneout_mask((T, B, size), z, like)
            return torch.full((1, 1, 1), z, dtype=like.dtype, device=like.device).expand(T, B, size)

        layer_opts = []
        for _ in range(L):
            row = []
            for _ in range(D):
                h_keep = None
                if train and self.recurrent_dropout > 0:
                    h_keep = _keep_mask((B, P), self.recurrent_dropout, like)
                row.append(LSTMStepOptions(self.coupled, self.layer_norm_eps, h_keep, zone(self.zoneout_h, P), zone(self.zoneout_c, H)))
            layer_opts.append(row)
        input_masks = None
        if train and self.input_dropout > 0:
            sizes = [self.input_size] + [P * D] * (L - 1)
            input_masks = [_keep_mask((B, n), self.input_dropout, like) for n in sizes]
        return layer_opts, input_masks

    def forward(self, input, hx=None, *, lengths=None, return_gates: bool = False):
        out, (h_n, c_n), gates = self._run(input, hx, lengths, record=return_gates)
        if return_gates:
            return LSTMResult(out, (h_n, c_n), gates)
        return out, (h_n, c_n)

    def decoder(self) -> LSTMDecoder:
        """A one-step decoder of this LSTM: ``y, state = step(x_t, state)`` with x_t (B, I), the
        lean path for decoding loops (see lstmkit.decoding.LSTMDecoder). It holds the module,
        not a copy: later changes to the weights, mode or options are seen by its next call."""
        return LSTMDecoder(self)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.forget_bias != DEFAULT_FORGET_BIAS:
            s += f", forget_bias={self.forget_bias}"
        for name in ("peephole", "coupled", "layer_norm"):
            if getattr(self, name):
                s += f", {name}=True"
        if self.zoneout != (0.0, 0.0):
            s += f", zoneout={self.zoneout}"
        for name in ("recurrent_dropout", "input_dropout", "weight_drop"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        return s


def _keep_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """Bernoulli(1 - p) keep-mask scaled by 1/(1 - p), so the expectation is unchanged.

    Drawn as rand >= p: a third cheaper than torch.bernoulli on a filled tensor, which matters
    for zoneout's (T, B, H) masks every forward.
    """
    return (torch.rand(shape, dtype=like.dtype, device=like.device) >= p).to(like.dtype) / (1.0 - p)


