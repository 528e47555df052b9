"""The nets the long-lag tasks train: one recurrent layer (lk.LSTM or lk.RNN) and a linear readout.

Shape legend: B batch, T steps, I inputs, H hidden units, O outputs.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..lstm import LSTM
from ..rnn import RNN

MODELS = ("lstm", "rnn")


class SequenceModel(nn.Module):
    """A recurrent core and a linear head, read at each sequence's last step or at every step.

    Args:
        kind: "lstm" (lk.LSTM, forget bias 1.0) or "rnn" (lk.RNN, tanh: the plain recurrent
            net the paper contrasts with LSTM).
        input_size, hidden_size, output_size: I, H, O.
        readout: "last" → forward returns (B, O), the output at step lengths - 1 of each
            sequence; "every" → (B, T, O).
        backend: passed to the core ("auto" picks the fastest available).
        forget_bias: the LSTM's initial forget-gate bias (see TaskDefaults.forget_bias).
        input_bias: the LSTM's initial input-gate bias, None to keep lk.LSTM's (TaskDefaults.input_bias).
        chrono: None, or T_max for the chrono initialization of Tallec & Ollivier (2018), which
            replaces both biases: per unit, b_f = ln u with u ~ U[1, T_max - 1] and b_i = -b_f, so
            the cells' initial memory time scales 1 / (1 - σ(b_f)) ≈ u spread over 1 … T_max
            instead of all sitting at one value.

    Because the core runs forwards only, the output at step lengths - 1 never sees the zero
    padding after it, so a right-padded batch needs no packing.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, output_size: int,
                 readout: str = "last", backend: str = "auto", forget_bias: float = 1.0,
                 input_bias: Optional[float] = None, chrono: Optional[int] = None) -> None:
        super().__init__()
        if kind not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {kind!r}")
        if readout not in ("last", "every"):
            raise ValueError(f"readout must be 'last' or 'every', got {readout!r}")
        self.kind, self.readout = kind, readout
        if kind == "lstm":
            self.core = LSTM(input_size, hidden_size, batch_first=True, backend=backend, forget_bias=forget_bias)
            if input_bias is not None:
                with torch.no_grad():  # rows of i in gate order i, f, g, o; b = b_ih + b_hh
                    self.core.bias_ih_l0[:hidden_size].fill_(input_bias)
                    self.core.bias_hh_l0[:hidden_size].zero_()
            if chrono is not None:
                chrono_init(self.core, chrono)
        else:
            self.core = RNN(input_size, hidden_size, batch_first=True, backend=backend)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.core(x)  # (B, T, H)
        if self.readout == "every":
            return self.head(out)  # (B, T, O)
        last = out[torch.arange(out.shape[0]), lengths.to(out.device) - 1]  # (B, H)
        return self.head(last)  # (B, O)


def chrono_init(core: LSTM, t_max: int) -> None:
    """Chrono initialization (Tallec & Ollivier 2018) of a one-layer lk.LSTM, in place; draws
    from torch's global generator (the Trainer seeds it)."""
    if t_max < 3:
        raise ValueError(f"chrono initialization needs T_max >= 3, got {t_max}")
    H = core.hidden_size
    with torch.no_grad():  # gate order i, f, g, o; the bias the cell sees is b_ih + b_hh
        b_f = torch.log(torch.empty(H).uniform_(1.0, t_max - 1.0))  # (H,)
        core.bias_ih_l0[H : 2 * H].copy_(b_f)
        core.bias_ih_l0[:H].copy_(-b_f)
        core.bias_hh_l0[: 2 * H].zero_()


def build_model(kind: str, task, hidden_size: int, backend: str = "auto",
                forget_bias: Optional[float] = None, input_bias: Optional[float] = None,
                chrono: Optional[int] = None) -> SequenceModel:
    """The model for a LagTask: its input/output sizes and readout, our hidden size; the
    biases default to the task's (TaskDefaults.forget_bias, input_bias, chrono)."""
    d = task.defaults
    return SequenceModel(kind, task.input_size, hidden_size, task.output_size, task.readout, backend,
                         d.forget_bias if forget_bias is None else forget_bias,
                         d.input_bias if input_bias is None else input_bias,
                         d.chrono if chrono is None else (chrono or None))
