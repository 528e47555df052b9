"""Streaming inference: one step at a time, for batch-1, low-latency use.

``StreamingLSTM(model).step(x_t, state) -> (y_t, state)`` runs all layers of a unidirectional
lk.LSTM for one new input, with the state in lk.LSTM's own hx layout, so a stream can start
from (or hand over to) a full-sequence call ``model(x, hx)``.

Shape legend: B batch (1 for streaming), I input_size, H hidden_size, P = proj_size or H,
L num_layers.

Engines (all behind the same tensor-in, tensor-out step(), on a snapshot of the weights):

- "fused": a one-step decoder (lk.LSTM.decoder(), lstmkit.decoding) of a frozen copy of the
  model: every layer's step in one call of the fused kernel's whole-stack operator, the weights
  prepared once. The default wherever it can run and pays: lk.LSTM's plain model (a projection
  allowed, no variants) in float32 or float64 on the CPU with the kernel built, from about 64 → 256
  up (below that torch.lstm_cell's smaller fixed cost per call wins).
- "torch": per layer one call to ``torch.lstm_cell`` (both GEMVs and the gate arithmetic in
  ATen) on detached weight copies with the two biases summed; a layer torch.lstm_cell cannot
  run (a projection, a variant) steps through the reference backend's own step function, so the
  equations stay written once. Any dtype and device; the default where "fused" cannot run or
  would be slower.
- "onnxruntime": one InferenceSession.run of the model's ONNX export per step.

Measured on this machine (batch 1, two threads, per call; python benchmarks/speed.py --shapes
decode): the fused decoder takes 78 µs at 256 → 512 and 149 µs with two such layers, against
109 and 260 µs for onnxruntime fed its own numpy outputs and 380 and 2,048 µs for
torch.nn.LSTM's forward with T = 1. Bidirectional networks cannot stream: the reverse direction
needs the end of the sequence first.

Variants stream too, as the module computes them in eval mode: peephole, coupled, LayerNorm and
projected layers step through the reference backend's own step function, zoneout is its
expectation (the shared zoneout_blend), and the dropouts are off.

Example:
    >>> import torch, lstmkit as lk
    >>> from lstmkit.interop import StreamingLSTM
    >>> model = lk.LSTM(4, 8, num_layers=2).eval()
    >>> stream = StreamingLSTM(model)
    >>> state = None
    >>> for x_t in torch.randn(5, 1, 4):          # steps arrive one by one
    ...     y_t, state = stream.step(x_t, state)  # y_t (1, 8); state = (h (2, 1, 8), c (2, 1, 8))
    >>> y_t.shape
    torch.Size([1, 8])
"""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .._masking import zoneout_blend
from .._recurrent import evaluating
from ..decoding import LSTMDecoder
from ..kernels.reference import input_projection, lstm_cell_step
from ..kernels.types import LSTMStepOptions
from ..lstm import LSTM

ENGINES = ("auto", "fused", "torch", "onnxruntime")
# "auto" takes the fused engine from this many weight entries (W_ih and W_hh of every layer) up. A
# step's fixed cost is about 25 µs on the fused decoder against 15 µs on torch.lstm_cell, which the
# fused kernel wins back on the arithmetic only from a few hundred thousand weights (batch 1, one
# thread, benchmarks/streaming.py): 8 → 64 18.6 µs torch against 28.4 fused, 32 → 128 (82k
# entries) 25.7 against 36.7, 64 → 256 (328k) 57.1 against 49.7, two such layers 133 against 86,
# 256 → 512 190 against 116.
AUTO_FUSED_MIN_WEIGHTS = 1 << 17


class StreamingLSTM:
    """Step-by-step inference of a unidirectional lk.LSTM (weights snapshotted; see refresh()).

    Args:
        model: an lk.LSTM (or torch.nn.LSTM) with bidirectional=False. Dropout is not applied
            (inference).
        engine: "auto" (default): "fused" where it can run the model and the model has at least
            AUTO_FUSED_MIN_WEIGHTS weight entries, else "torch".
            "fused": the fused kernel's one-step decoder of a frozen copy of the model (lk.LSTM's
            plain model, a projection allowed, float32 or float64 on the CPU; a ValueError says
            why not otherwise).
            "torch": torch.lstm_cell per layer, any dtype and device.
            "onnxruntime": each step is one InferenceSession.run of the model's ONNX export
            (float32, CPU; needs onnx and onnxruntime). Handing torch tensors to onnxruntime
            and back costs ~40 µs per step here, so it only pays off where the step's arithmetic
            dominates (it matched the torch engine at 64→256, 2 layers; slower at smaller sizes).
        threads: onnxruntime's intra-op threads (default 1: a batch-1 step is too small to split).
            The torch engine follows torch.set_num_threads (1 is also its best setting at batch 1).

    ``step(x_t, state=None) -> (y_t, state)``:
        x_t: (B, I), or (I,) for a single unbatched stream.
        state: None (zeros) or (h, c) with h (L, B, P), c (L, B, H) — (L, P), (L, H) for
            unbatched x_t — exactly lk.LSTM's hx / (h_n, c_n).
        y_t: (B, P) or (P,): the last layer's h, which is the step's row of lk.LSTM's output.
    """

    def __init__(self, model: LSTM, *, engine: str = "auto", threads: int = 1) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
        if isinstance(model, torch.nn.LSTM):
            from .converters import from_torch

            model = from_torch(model)
        if not isinstance(model, LSTM):
            raise TypeError(f"StreamingLSTM expects an lk.LSTM or torch.nn.LSTM, got {type(model).__name__}")
        if model.bidirectional:
            raise ValueError("a bidirectional LSTM cannot stream: its reverse direction needs the whole sequence first")
        self.model = model
        self.input_size, self.hidden_size = model.input_size, model.hidden_size
        self.num_layers, self.state_size = model.num_layers, model.state_size
        self.requested_engine, self.threads = engine, threads
        self.refresh()

    def refresh(self) -> None:
        """Take a new snapshot of the model's weights (call after training or loading weights)."""
        self._decoder = self._fused_decoder() if self.requested_engine in ("auto", "fused") else None
        self.engine = "fused" if self._decoder is not None else (
            "torch" if self.requested_engine == "auto" else self.requested_engine)
        w = self.model.weight_ih_l0
        self._dtype, self._device = w.dtype, w.device
        if self._decoder is not None:  # its frozen copy is the snapshot
            self._layers, self._params, self._variant = [], [], False
            return
        with evaluating(self.model):  # inference: no dropouts, zoneout's expectation
            # torch.lstm_cell runs the plain cell only; anything else takes the reference step
            self._variant = bool(self.model._variants()) or self.model.proj_size > 0
            params = self.model._layer_params()
        with torch.no_grad():
            # A reference-step layer needs every tensor of the layer (peepholes, LN, W_hr); a plain
            # one the weights of torch.lstm_cell with its two biases summed.
            self._params = [_snapshot(p) for (p,) in params] if self._variant else []
            self._layers = [] if self._variant else [
                (p.w_ih.detach().clone(), p.w_hh.detach().clone(),  # clone: a snapshot
                 None if p.b_ih is None else (p.b_ih + p.b_hh).detach().clone())  # (4H,)
                for (p,) in params]
        if self.engine == "onnxruntime":
            import onnxruntime as ort

            from .onnx_export import export_onnx

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            proto = export_onnx(self.model, initial_state=True)
            self._session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            self._dtype, self._device = torch.float32, torch.device("cpu")  # what the session computes in

    def _fused_decoder(self) -> Optional[LSTMDecoder]:
        """The fused engine: a decoder of a frozen copy of the model in eval mode (a snapshot, as the
        other engines keep), or None under "auto" when the whole-stack operator cannot run it or
        the model is too small for it to pay (see AUTO_FUSED_MIN_WEIGHTS)."""
        if self.requested_engine == "auto":
            entries = sum(p.numel() for n, p in self.model.named_parameters() if n.startswith(("weight_ih", "weight_hh")))
            if entries < AUTO_FUSED_MIN_WEIGHTS:
                return None
        with evaluating(self.model):  # the route the frozen copy will take, asked of the model itself
            lean = self.model.decoder().lean
        if lean:
            return copy.deepcopy(self.model).eval().requires_grad_(False).decoder()
        if self.requested_engine == "fused":
            raise ValueError("engine='fused' runs lk.LSTM's plain model (no variants, float32 or float64, on the "
                             "CPU, backend 'auto' or 'fused') with the fused kernel built; use engine='torch' here")
        return None

    def initial_state(self, batch_size: Optional[int] = 1) -> tuple[Tensor, Tensor]:
        """Zeros (h (L, B, P), c (L, B, H)); batch_size=None gives the unbatched (L, P), (L, H)."""
        lead = (self.num_layers,) + (() if batch_size is None else (batch_size,))
        kw = {"dtype": self._dtype, "device": self._device}
        return torch.zeros(lead + (self.state_size,), **kw), torch.zeros(lead + (self.hidden_size,), **kw)

    def step(self, x_t: Tensor, state: Optional[tuple[Tensor, Tensor]] = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        # Every line here runs once per step: a few tensor ops per layer and plain checks on shapes.
        unbatched = x_t.dim() == 1
        x = x_t.unsqueeze(0) if unbatched else x_t  # (B, I)
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"x_t must be (B, {self.input_size}) or ({self.input_size},), got {tuple(x_t.shape)}")
        B, L = x.shape[0], self.num_layers
        if state is not None:
            h0, c0 = state
            lead = (L,) if unbatched else (L, B)
            if h0.shape != lead + (self.state_size,) or c0.shape != lead + (self.hidden_size,):
                raise ValueError(
                    f"state must be (h {lead + (self.state_size,)}, c {lead + (self.hidden_size,)}), "
                    f"got ({tuple(h0.shape)}, {tuple(c0.shape)})")
        if self._decoder is not None:  # x_t and the state as given: the decoder trusts its own last state
            return self._decoder(x_t, state)
        if state is None:
            h0, c0 = self.initial_state(B)
        elif unbatched:
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)  # (L, 1, ·)
        if self.engine == "onnxruntime":
            inp, h_n, c_n = self._ort_step(x, h0, c0)
        elif self._variant:
            inp, h_n, c_n = self._variant_step(x, h0, c0)
        else:
            inp, h_n, c_n = self._torch_step(x, h0, c0)
        if unbatched:
            return inp.squeeze(0), (h_n.squeeze(1), c_n.squeeze(1))
        return inp, (h_n, c_n)

    def _ort_step(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One session.run with T = 1; numpy views in and out (no copies for CPU float32)."""
        def arr(t: Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().to(torch.float32).numpy())  # no-ops for contiguous float32

        feeds = {"input": arr(x.unsqueeze(0)), "h0": arr(h0), "c0": arr(c0)}
        y, h_n, c_n = self._session.run(None, feeds)  # y (1, B, P)
        return torch.from_numpy(y[0]), torch.from_numpy(h_n), torch.from_numpy(c_n)

    def _torch_step(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        L = self.num_layers
        hs, cs = [], []
        inp = x
        for (w_ih, w_hh, b), h_prev, c_prev in zip(self._layers, h0.unbind(0), c0.unbind(0)):
            h, c = torch.lstm_cell(inp, (h_prev, c_prev), w_ih, w_hh, b, None)  # (B, H) each
            hs.append(h)
            cs.append(c)
            inp = h
        if L == 1:
            h_n, c_n = hs[0].unsqueeze(0), cs[0].unsqueeze(0)  # views: cheaper than stack
        else:
            h_n, c_n = torch.stack(hs), torch.stack(cs)  # (L, B, H)
        return inp, h_n, c_n

    def _variant_step(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step of a projected or variant LSTM through the reference equations (lstm_cell_step)."""
        o = self.model.options
        opts = LSTMStepOptions(coupled=o.coupled, ln_eps=o.layer_norm_eps)
        z_c, z_h = o.zoneout
        hs, cs = [], []
        inp = x
        for p, h_prev, c_prev in zip(self._params, h0.unbind(0), c0.unbind(0)):
            x_proj = input_projection(inp.unsqueeze(0), p, opts.ln_eps)[0]  # (B, GH)
            h, c, _ = lstm_cell_step(x_proj, h_prev, c_prev, p, opts)  # (B, P), (B, H)
            h, c = zoneout_blend(h, h_prev, z_h), zoneout_blend(c, c_prev, z_c)  # eval: the rates
            hs.append(h)
            cs.append(c)
            inp = h
        return inp, torch.stack(hs), torch.stack(cs)

    def run(self, xs: Tensor, state: Optional[tuple[Tensor, Tensor]] = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Step through xs (T, B, I) (or (T, I)); returns (outputs (T, B, P), final state)."""
        ys = []
        for x_t in xs:
            y_t, state = self.step(x_t, state)
            ys.append(y_t)
        return torch.stack(ys), state


def _snapshot(p):
    """A detached clone of every tensor in a (possibly nested) NamedTuple of layer parameters."""
    if p is None:
        return None
    if isinstance(p, Tensor):
        return p.detach().clone()
    return type(p)(*(_snapshot(v) for v in p))
