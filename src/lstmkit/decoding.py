"""One-step decoding: ``lstm.decoder()`` steps an lk.LSTM one time step per call.

A decoding loop (a language model sampling, a translation decoder, a controller) calls the
LSTM once per step with T = 1 and feeds each call's state back into the next. At such sizes
the module's per-call work costs as much as the step itself: validating the state it returned
a moment ago, re-assembling the weights into the operator's flat list, checking every weight's
fingerprint against the kernel's caches, choosing a backend (about 65 µs of a 120 µs call at
256 → 512, batch 1). A decoder does that work once and keeps it:

- the plan: the operator's weights and their prepared copies (transposed, summed biases,
  packed panels), made again only when a parameter is replaced or changed in place (its
  version counter moves: an optimizer step, load_state_dict, ``w.add_(…)`` under no_grad);
- the route: whether the call can run as one whole-stack operator (lk.LSTM's plain model on
  the fused kernel), decided again only when the module's mode, options or backend change;
- the state it returned last: passed straight back, it is trusted without a check; any other
  state (or one changed in place since) is validated as the module validates it. (Tensors made
  under torch.inference_mode keep no version counter: such a state is trusted by identity and
  shape, and such weights are prepared again on every call.)

Decoding is inference: a decoder runs the model in the mode it is in, as its forward would, but
never records autograd history. Calls the whole-stack operator cannot run (lk.LSTM's variants,
backend="reference" or "native", devices other than the CPU, dropout between layers in
training, a traced call) go through the module's own forward, so every lk.LSTM decodes alike.

    >>> import lstmkit as lk, torch
    >>> lstm = lk.LSTM(8, 16, num_layers=2).eval()
    >>> step = lstm.decoder()
    >>> y, state = step(torch.randn(3, 8))            # x_t (B, I), state None: zeros
    >>> y, state = step(torch.randn(3, 8), state)     # h_t of the top layer (B, P), (h_n, c_n)
    >>> y.shape, state[0].shape
    (torch.Size([3, 16]), torch.Size([2, 3, 16]))

Shape legend: B batch, I input_size, H hidden_size, P proj_size or H, L num_layers.
"""
from __future__ import annotations

from operator import is_
from typing import Any, Optional

import torch
from torch import Tensor, nn

from . import _checks as check
from ._recurrent import RecurrentBase
from ._tracing import values_hidden
from .kernels import fused, select_backend


class LSTMDecoder:
    """Steps ``lstm`` one time step per call: ``y, (h, c) = decoder(x_t, state)``.

    Args:
        lstm: a unidirectional lk.LSTM (a bidirectional one reads each sequence whole: its
            reverse direction starts at the last step, which a step-by-step caller has not seen).

    Call: ``decoder(x, state=None) -> (y, (h_n, c_n))``
        x: one step, (B, I), or (I,) for a single unbatched sequence.
        state: (h, c) as the module takes it, h (L, B, P), c (L, B, H) (no B when unbatched),
            or None for zeros.
        y: the top layer's h_t, (B, P) or (P,), exactly what ``lstm(x[None], state)[0][0]`` is.
    """

    def __init__(self, lstm: nn.Module) -> None:
        if not isinstance(lstm, RecurrentBase) or lstm.cell != "lstm":
            raise TypeError(f"decoder() steps an lk.LSTM, got {type(lstm).__name__}")
        if lstm.bidirectional:
            raise ValueError("decoder() needs a unidirectional LSTM: a bidirectional one reads each sequence whole "
                             "(its reverse direction starts at the last step), so it cannot be stepped")
        self.lstm = lstm
        self._route: Optional[tuple] = None  # (key, lean): lean when one whole-stack operator can run the call
        self._tensors: Optional[tuple] = None  # the parameters the plans were made from
        self._versions: tuple = ()             # and their version stamps then
        self._plans: dict = {}                 # B -> stack_infer_plan for a batch of B rows
        self._returned: Optional[tuple] = None  # (h, c, B, batched, inference?, versions) of the last call

    def __repr__(self) -> str:
        return f"LSTMDecoder({self.lstm!r})"

    def __call__(self, x: Any, state: Any = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        lstm = self.lstm
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor (one step), got {type(x).__name__}")
        if x.dim() not in (1, 2) or x.shape[-1] != lstm.input_size:
            raise ValueError(f"x must be one step, (batch, {lstm.input_size}) or ({lstm.input_size},) unbatched, "
                             f"got {tuple(x.shape)}")
        if values_hidden(x) or not self._lean():  # traced: the module's forward is what compile and export know
            return self._through_module(x, state)
        batched = x.dim() == 2
        B = x.shape[0] if batched else 1
        check.same_dtype_device("x", x, lstm._parameters["weight_ih_l0"])  # the dict: Module.__getattr__ is slower
        check.sizes(1, B)
        check.finite("x", x)
        h0, c0 = self._initial_state(state, B, batched, x)
        out, h_n, c_n = fused.stack_infer(x[None] if batched else x.view(1, 1, -1), h0, c0, self._plan(B),
                                          lstm.num_layers, False)
        if not batched:
            out, h_n, c_n = out.view(-1), h_n.squeeze(1), c_n.squeeze(1)
        else:
            out = out[0]
        inference = h_n.is_inference()  # then no version counters (see _initial_state)
        self._returned = (h_n, c_n, B, batched, inference, None if inference else (h_n._version, c_n._version))
        return out, (h_n, c_n)

    @property
    def lean(self) -> bool:
        """Whether calls run as one call of the fused kernel's whole-stack operator now (else each
        goes through the module's forward)."""
        return self._lean()

    # --- what a call reuses ---------------------------------------------------------------------

    def _lean(self) -> bool:
        """Whether calls run as one whole-stack operator: decided again when the module's mode,
        options, backend or weight dtype and device change."""
        lstm = self.lstm
        weight = lstm._parameters["weight_ih_l0"]
        key = (lstm.training, getattr(lstm, "options", None), lstm.backend, lstm.dropout, weight.dtype, weight.device)
        if self._route is None or self._route[0] != key:
            spec = lstm._run_spec(False, weight)
            try:
                backend = select_backend(lstm.backend, spec)
            except (ValueError, RuntimeError):  # the module's forward says why, in its own words
                backend = None
            lean = (backend is not None and backend.name == "fused" and not spec.variants
                    and not fused.dropout_between_layers(spec))
            self._route = (key, lean)
        return self._route[1]

    def _plan(self, B: int) -> tuple[list, list]:
        """The operator's weights and prepared copies for B rows, made again when a parameter
        was replaced or changed in place since."""
        params = self.lstm._parameters
        tensors = self._tensors
        # map over C-level callables: identity of every parameter, then their version counters
        if (tensors is None or len(params) != len(tensors) or not all(map(is_, params.values(), tensors))
                or tuple(map(_weight_version, tensors)) != self._versions):
            self._plans.clear()
            self._tensors = tuple(params.values())
            self._versions = tuple(map(_weight_version, self._tensors))
        plan = self._plans.get(B)
        if plan is None:
            plan = self._plans[B] = fused.stack_infer_plan(self.lstm._layer_params(), B, self.lstm.weight_ih_l0.dtype)
        return plan

    def _initial_state(self, state: Any, B: int, batched: bool, x: Tensor) -> tuple[Tensor, Tensor]:
        """(h0, c0) as (L, B, ·): the state this decoder returned last, passed back as it was, is
        taken as it is; anything else is checked as the module checks it."""
        last = self._returned
        if (last is not None and type(state) is tuple and len(state) == 2 and state[0] is last[0]
                and state[1] is last[1] and last[2] == B and last[3] == batched):
            h, c = state
            # A version counter moves with every in-place change (resize_ included); inference
            # tensors have none, so for them the shapes are checked instead.
            if (h._version, c._version) == last[5] if not last[4] else (
                    h.shape[-1] == self.lstm.state_size and c.shape[-1] == self.lstm.hidden_size
                    and h.dim() == c.dim() == (3 if batched else 2)):
                return (h, c) if batched else (h.unsqueeze(1), c.unsqueeze(1))
        return self.lstm._initial_state(state, B, batched, x)

    def _through_module(self, x: Tensor, state: Any) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The module's own forward on the one step: every call it cannot shortcut."""
        lstm = self.lstm
        batched = x.dim() == 2
        seq = x.unsqueeze(1 if batched and lstm.batch_first else 0)  # (1, B, I), (B, 1, I) or (1, I)
        with torch.no_grad():
            out, state_n = lstm(seq, state)
        if not batched:
            return out[0], state_n
        return (out[:, 0] if lstm.batch_first else out[0]), state_n


# A weight's version and storage address (module.double() or .to() swap a parameter's .data, which
# moves no version counter), as the kernel's weight caches stamp them.
_weight_version = fused.version_stamp
