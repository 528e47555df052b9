"""lk.RNN: the plain (Elman) RNN that the LSTM is contrasted with, state_dict-compatible with torch.nn.RNN."""
from __future__ import annotations

from typing import Any, NamedTuple, Union

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from . import _checks as check
from ._recurrent import RecurrentBase
from ._torch_compat import RNNBaseCompat
from .kernels import RNNLayerParams, RNNStates


class RNNResult(NamedTuple):
    """What ``RNN(..., return_states=True)`` returns; unpacks as (output, h_n, states)."""

    output: Union[Tensor, PackedSequence]
    h_n: Tensor
    states: RNNStates


class RNN(RNNBaseCompat, RecurrentBase):
    r"""Multi-layer plain recurrent network: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    No gates and no memory cell: the error signal flowing back through h is multiplied by
    W_hh and act' at every step, so over long lags it vanishes (or explodes) — the problem
    the LSTM's additive cell update was built to avoid.

    Args (as torch.nn.RNN): input_size, hidden_size, num_layers=1, nonlinearity="tanh"
        ("tanh" | "relu"), bias=True, batch_first=False, dropout=0.0, bidirectional=False,
        device=None, dtype=None; keyword-only backend ("auto" | "reference" | "native").

    Forward: ``rnn(input, hx=None, *, lengths=None, return_states=False)`` with the layouts of
    lk.LSTM; returns ``(output, h_n)`` or RNNResult ``(output, h_n, states)`` where
    ``states.h`` holds every step's hidden state, (L, D, T, B, H).

    Example:
        >>> import lstmkit as lk, torch
        >>> out, h = lk.RNN(3, 5)(torch.randn(7, 2, 3))
        >>> out.shape, h.shape
        (torch.Size([7, 2, 5]), torch.Size([1, 2, 5]))
    """

    _params_type = RNNLayerParams

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        backend: str = "auto",
    ) -> None:
        self.nonlinearity = check.choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(
            f"rnn_{nonlinearity}", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, 0, device, dtype, backend,
        )

    def forward(self, input, hx=None, *, lengths=None, return_states: bool = False):
        out, (h_n,), states = self._run(input, hx, lengths, record=return_states)
        if return_states:
            return RNNResult(out, h_n, states)
        return out, h_n

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")
