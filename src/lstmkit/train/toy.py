"""A built-in streaming task, "echo": small and fast, it exercises what the Trainer promises.

Every row of a batch is an endless stream of scalars cut into documents of ``doc_batches``
batches each; the target at step t is the input ``lag`` steps earlier in the same document
(0 within the first ``lag`` steps of a document). Batch k continues batch k − 1, so the model
needs the state carried across TBPTT windows and batches, and must forget it at a document
boundary: batches carry the Trainer's ``"reset"`` mask. Rows start documents at different
batches, so resets are per row.

Used by the Trainer's tests and as a template for stateful streaming tasks; the 1997
long-time-lag problems live in lstmkit.paper1997.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..lstm import LSTM
from ..rnn import RNN
from .registry import register_task
from .task import Task


@dataclass
class EchoConfig:
    """Options of the "echo" task."""

    model: str = "lstm"  # "lstm" | "rnn"
    hidden_size: int = 16
    window: int = 20  # steps per batch
    lag: int = 5  # recall the input this many steps back
    doc_batches: int = 3  # a document spans this many consecutive batches
    data_seed: int = 0
    eval_docs: int = 32
    dropout_p: float = 0.0  # dropout on the LSTM output (exercises RNG restore on resume)
    backend: str = "auto"


class EchoModel(nn.Module):
    def __init__(self, cfg: EchoConfig) -> None:
        super().__init__()
        core = LSTM if cfg.model == "lstm" else RNN
        self.core = core(1, cfg.hidden_size, batch_first=True, backend=cfg.backend)
        self.drop = nn.Dropout(cfg.dropout_p)
        self.head = nn.Linear(cfg.hidden_size, 1)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        out, state = self.core(x, state)  # out (B, T, H)
        return self.head(self.drop(out)).squeeze(-1), state  # (B, T)


class EchoTask(Task):
    def __init__(self, cfg: EchoConfig) -> None:
        if cfg.model not in ("lstm", "rnn"):
            raise ValueError(f"echo: model must be 'lstm' or 'rnn', got {cfg.model!r}")
        if not 0 < cfg.lag <= cfg.window:
            raise ValueError(f"echo: lag must be in [1, window={cfg.window}], got {cfg.lag}")
        if not 0 <= cfg.dropout_p < 1:
            raise ValueError(f"echo: dropout_p must be in [0, 1), got {cfg.dropout_p}")
        if cfg.hidden_size < 1 or cfg.doc_batches < 1 or cfg.eval_docs < 1:
            raise ValueError(f"echo: hidden_size, doc_batches and eval_docs must be >= 1, got "
                             f"{cfg.hidden_size}, {cfg.doc_batches}, {cfg.eval_docs}")
        self.cfg = cfg

    def build_model(self) -> nn.Module:
        return EchoModel(self.cfg)

    def _chunk(self, k: int, batch_size: int) -> Tensor:
        """Inputs of global batch k: (B, window), a function of (data_seed, k) only."""
        if k < 0:
            return torch.zeros(batch_size, self.cfg.window)
        g = torch.Generator().manual_seed(self.cfg.data_seed * 1_000_003 + k)
        return torch.randn(batch_size, self.cfg.window, generator=g)

    def global_batch(self, k: int, batch_size: int) -> dict[str, Tensor]:
        c = self.cfg
        x, prev = self._chunk(k, batch_size), self._chunk(k - 1, batch_size)
        reset = (torch.arange(batch_size) + k) % c.doc_batches == 0  # (B,) row starts a document
        prev = prev.masked_fill(reset[:, None], 0.0)
        y = torch.cat([prev, x], 1)[:, c.window - c.lag : 2 * c.window - c.lag]  # y_t = x_{t-lag}
        return {"x": x.unsqueeze(-1), "y": y, "reset": reset}


    def loss(self, model: nn.Module, batch: Any, state: Any) -> tuple[Tensor, Any]:
        y, state = model(batch["x"], state)
        return F.mse_loss(y, batch["y"]), state

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """MSE over whole documents of held-out streams (targets past the lag only)."""
        c = self.cfg
        g = torch.Generator().manual_seed(2**31 - 1 - c.data_seed)
        T = c.window * c.doc_batches
        x = torch.randn(c.eval_docs, T, generator=g)
        dev = next(model.parameters()).device
        y, _ = model(x.unsqueeze(-1).to(dev))
        err = F.mse_loss(y[:, c.lag:], x[:, :-c.lag].to(dev))
        return {"loss": float(err), "baseline": 1.0}  # predicting 0 scores the input variance


@register_task("echo", EchoConfig, help="recall the input `lag` steps back in a stream (TBPTT, resets)")
def make_echo(cfg: EchoConfig) -> EchoTask:
    return EchoTask(cfg)
