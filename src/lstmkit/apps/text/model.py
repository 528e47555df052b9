"""The character language model: embedding → lk.LSTM (or lk.sLSTM / lk.mLSTM) → linear decoder (weights optionally tied).

Shapes: B = batch (parallel streams), T = time, V = vocabulary, E = embedding, H = hidden,
L = layers.

    >>> import torch
    >>> from lstmkit.apps.text.model import CharLM
    >>> model = CharLM(vocab_size=60, embedding_size=32, hidden_size=32, tie_weights=True)
    >>> logits, (h, c) = model(torch.zeros(2, 5, dtype=torch.long))
    >>> logits.shape, h.shape
    (torch.Size([2, 5, 60]), torch.Size([1, 2, 32]))
"""
from __future__ import annotations

from typing import Any, Optional

from torch import Tensor, nn

from ...lstm import LSTM
from ...rnn import RNN
from ...xlstm import mLSTM, sLSTM
from ..lstm_config import LSTMConfig

CELLS = ("lstm", "rnn", "slstm", "mlstm")


class CharLM(nn.Module):
    """Next-character logits from character ids, with the (h, c) state in and out.

    Args:
        vocab_size: V. embedding_size [64]: E. hidden_size [256]: H. num_layers [1]: L.
        dropout [0.0]: on the embeddings, between LSTM layers and before the decoder.
        tie_weights [False]: the decoder reuses the embedding matrix (needs E == H).
        backend ["auto"] and any other keyword (the ``[lstm]`` section's: layer_norm, peephole,
            coupled, zoneout, proj_size, ...): passed to lk.LSTM. With proj_size, the decoder
            reads the projected h (and tie_weights needs embedding_size == proj_size).
        cell ["lstm"]: "slstm" or "mlstm" puts lk.sLSTM / lk.mLSTM (num_heads heads [4]) where
            the LSTM is; the state is then (h, c, n, m) or (C, n, m), and lstm_kwargs must be empty.
            "rnn" puts lk.RNN (tanh) there, with the state (h,): a tuple like the others', so
            the task's state handling serves every cell.
    """

    def __init__(self, vocab_size: int, embedding_size: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 dropout: float = 0.0, tie_weights: bool = False, backend: str = "auto", cell: str = "lstm",
                 num_heads: int = 4, **lstm_kwargs: Any) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"CharLM: vocab_size must be >= 1, got {vocab_size}")
        variants = LSTMConfig(**lstm_kwargs)  # checked here, named as in a config's [lstm] section
        out_size = variants.output_size(hidden_size)  # size of h
        if tie_weights and embedding_size != out_size:
            size = "proj_size" if variants.proj_size else "hidden_size"
            raise ValueError(f"CharLM: tie_weights needs embedding_size == {size}, got {embedding_size} and {out_size}")
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.drop = nn.Dropout(dropout)
        if cell not in CELLS:
            raise ValueError(f"CharLM: cell must be one of {CELLS}, got {cell!r}")
        used = variants.kwargs()
        if cell != "lstm" and used:
            raise ValueError(f"CharLM: {', '.join(sorted(used))} apply to cell='lstm' only, got cell={cell!r}")
        between = dropout if num_layers > 1 else 0.0
        if cell == "slstm":
            self.lstm = sLSTM(embedding_size, hidden_size, num_layers, batch_first=True, dropout=between,
                              num_heads=num_heads, backend=backend)
        elif cell == "rnn":
            self.lstm = RNN(embedding_size, hidden_size, num_layers, batch_first=True, dropout=between,
                            backend=backend)
        elif cell == "mlstm":
            self.lstm = mLSTM(embedding_size, hidden_size, num_layers, batch_first=True, dropout=between,
                              num_heads=num_heads)
        else:
            self.lstm = LSTM(embedding_size, hidden_size, num_layers, batch_first=True, dropout=between,
                             backend=backend, **lstm_kwargs)
        self.decoder = nn.Linear(out_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight  # (V, P) == (V, E)

    def forward(self, ids: Tensor, state: Optional[tuple[Tensor, Tensor]] = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """ids (B, T) int64, state (h, c) each (L, B, H) or None → logits (B, T, V), new state."""
        x = self.drop(self.embedding(ids))  # (B, T, E)
        if isinstance(self.lstm, RNN):
            out, h = self.lstm(x, None if state is None else state[0])
            return self.decoder(self.drop(out)), (h,)
        out, state = self.lstm(x, state)  # (B, T, H)
        return self.decoder(self.drop(out)), state  # (B, T, V)
