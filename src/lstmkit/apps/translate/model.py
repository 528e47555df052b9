r"""Encoder–decoder LSTM with Luong attention (Luong, Pham & Manning 2015), or Bahdanau's additive score.

Shapes: B batch, S source length (padded), T target length, E embedding, H hidden size, D source
directions (1 or 2), L layers, V_s / V_t vocabulary sizes. With ``[lstm] proj_size`` = P, every h
below (encoder outputs, decoder h, the attention query) is P wide instead of H.

    encoder   h̄_1 … h̄_S = lk.LSTM(embed(x); lengths)            (B, S, D·H), zero past each length
    bridge    h_0 = tanh(W_h [h_fwd; h_bwd]),  c_0 = W_c [c_fwd; c_bwd]   per layer (bidirectional only)
    decoder   h_t = lk.LSTM(embed(y_{t-1}) [; h̃_{t-1}])            (B, H)   input feeding optional
    score     general: h_tᵀ W_a h̄_s   dot: h_tᵀ h̄_s   additive: vᵀ tanh(W_q h_t + W_k h̄_s)
    weights   a_t = softmax_s(score) over s < length only         (B, S)   exactly 0 on padding
    context   c_t = Σ_s a_ts h̄_s                                  (B, D·H)
    output    h̃_t = tanh(W_c [c_t; h_t]),  p(y_t | …) = softmax(W_s h̃_t)

Without input feeding the decoder runs over the whole target in one lk.LSTM call (teacher
forcing) and attention is one batched matmul; with it, each step also sees h̃_{t-1} (the
previous step's attentional output), which costs a loop over steps but tells the decoder what
it already attended to. ``decode_step`` is the same computation one step at a time, for greedy
and beam search; a test pins the two together.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from ..._masking import length_mask
from ...lstm import LSTM
from ..vocab import PAD

ATTENTIONS = ("general", "dot", "additive")

State = tuple[Tensor, Tensor]  # (h, c) each (L, B, H)


class Memory(NamedTuple):
    """What the decoder attends to: encoder outputs, their projection for scoring, the valid mask."""

    outputs: Tensor  # (B, S, D·H)
    keys: Tensor  # (B, S, ·): outputs projected once for the score (general / additive)
    mask: Tensor  # (B, S) bool, True at real (non-pad) positions

    def select(self, index: Tensor) -> "Memory":
        """Rows ``index`` (e.g. repeated for beams)."""
        return Memory(*(t.index_select(0, index) for t in self))


class Attention(nn.Module):
    """Scores a decoder query against the memory and returns (context, weights)."""

    def __init__(self, query_size: int, memory_size: int, kind: str = "general") -> None:
        super().__init__()
        if kind not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(f"dot attention needs the decoder size ({query_size}) to equal the encoder output size "
                             f"({memory_size}); use 'general' (or bidirectional=false)")
        self.kind = kind
        if kind == "general":
            self.key_proj = nn.Linear(memory_size, query_size, bias=False)  # W_a applied to h̄ once per sentence
        elif kind == "additive":
            self.key_proj = nn.Linear(memory_size, query_size, bias=False)
            self.query_proj = nn.Linear(query_size, query_size, bias=True)
            self.v = nn.Linear(query_size, 1, bias=False)

    def keys(self, outputs: Tensor) -> Tensor:
        return outputs if self.kind == "dot" else self.key_proj(outputs)

    def forward(self, query: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """query (B, T, H) → context (B, T, D·H), weights (B, T, S) (0 at padded positions)."""
        if self.kind == "additive":
            q = self.query_proj(query)  # (B, T, H)
            scores = self.v(torch.tanh(q.unsqueeze(2) + memory.keys.unsqueeze(1))).squeeze(-1)  # (B, T, S)
        else:
            scores = torch.bmm(query, memory.keys.transpose(1, 2))  # (B, T, S)
        scores = scores.masked_fill(~memory.mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, S)
        return torch.bmm(weights, memory.outputs), weights


class Seq2Seq(nn.Module):
    """Encoder–decoder LSTM with attention over the source (see the module docstring).

    Args (defaults in brackets):
        src_vocab_size: V_s. tgt_vocab_size: V_t.
        embedding_size [128]: E, both sides. hidden_size [256]: H of encoder (per direction) and decoder.
        num_layers [1]: L, both sides. bidirectional [True]: the encoder reads both ways.
        attention ["general"]: one of ATTENTIONS. input_feed [False]: Luong's input feeding.
        dropout [0.0]: on embeddings, between layers and on h̃ before the output layer.
        backend ["auto"] and any other keyword (the ``[lstm]`` section's variants): passed to both
            lk.LSTMs. With proj_size P, encoder outputs are D·P, the decoder's h is P (its c H),
            and attention scores P-sized queries.

    Example:
        >>> m = Seq2Seq(20, 30, embedding_size=8, hidden_size=16)
        >>> src = torch.tensor([[5, 6, 7], [8, 9, 0]]); lengths = torch.tensor([3, 2])
        >>> m(src, lengths, torch.tensor([[1, 4], [1, 5]])).shape
        torch.Size([2, 2, 30])
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embedding_size: int = 128, hidden_size: int = 256,
                 num_layers: int = 1, bidirectional: bool = True, attention: str = "general", input_feed: bool = False,
                 dropout: float = 0.0, backend: str = "auto", **lstm_kwargs) -> None:
        super().__init__()
        for name, v in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size),
                        ("embedding_size", embedding_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if v < 1:
                raise ValueError(f"Seq2Seq: {name} must be >= 1, got {v}")
        H, D, L = hidden_size, 2 if bidirectional else 1, num_layers
        self.hidden_size, self.num_layers, self.directions, self.input_feed = H, L, D, input_feed
        between = dropout if L > 1 else 0.0
        self.src_embedding = nn.Embedding(src_vocab_size, embedding_size, padding_idx=PAD)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, embedding_size, padding_idx=PAD)
        self.encoder = LSTM(embedding_size, H, L, batch_first=True, bidirectional=bidirectional, dropout=between,
                            backend=backend, **lstm_kwargs)
        P = self.encoder.state_size  # size of h: proj_size when projecting, else H
        self.bridge_h = nn.Linear(D * P, P) if D == 2 else None
        self.bridge_c = nn.Linear(D * H, H) if D == 2 else None
        self.decoder = LSTM(embedding_size + (H if input_feed else 0), H, L, batch_first=True, dropout=between,
                            backend=backend, **lstm_kwargs)
        self.attention = Attention(P, D * P, attention)
        self.combine = nn.Linear(D * P + P, H, bias=False)  # W_c
        self.out = nn.Linear(H, tgt_vocab_size)  # W_s
        self.drop = nn.Dropout(dropout)

    # ..................................................................... encoder

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Memory, State]:
        """src (B, S) int64 right-padded, lengths (B,) → (memory, decoder's initial (h, c) each (L, B, H))."""
        if src.dim() != 2 or lengths.shape != src.shape[:1]:
            raise ValueError(f"Seq2Seq.encode: expected src (B, S) and lengths (B,), got {tuple(src.shape)} and "
                             f"{tuple(lengths.shape)}")
        x = self.drop(self.src_embedding(src))  # (B, S, E)
        outputs, (h, c) = self.encoder(x, lengths=lengths.cpu())  # (B, S, D·H); (L·D, B, H)
        mask = length_mask(lengths.to(src.device), src.shape[1])  # (B, S)
        if self.directions == 2:
            B = src.shape[0]
            h = h.view(self.num_layers, 2, B, -1).permute(0, 2, 1, 3).reshape(self.num_layers, B, -1)  # (L, B, 2P)
            c = c.view(self.num_layers, 2, B, -1).permute(0, 2, 1, 3).reshape(self.num_layers, B, -1)  # (L, B, 2H)
            h, c = torch.tanh(self.bridge_h(h)), self.bridge_c(c)  # (L, B, P), (L, B, H)
        return Memory(outputs, self.attention.keys(outputs), mask), (h.contiguous(), c.contiguous())

    # ..................................................................... decoder

    def _attend(self, dec_out: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """dec_out (B, T, H) → attentional h̃ (B, T, H), weights (B, T, S)."""
        context, weights = self.attention(dec_out, memory)  # (B, T, D·H), (B, T, S)
        return torch.tanh(self.combine(torch.cat([context, dec_out], dim=-1))), weights

    def initial_feed(self, state: State) -> Optional[Tensor]:
        """h̃_0 for input feeding: zeros (B, H); None without input feeding."""
        return state[0].new_zeros(state[0].shape[1], self.hidden_size) if self.input_feed else None

    def decode_step(self, tokens: Tensor, state: State, feed: Optional[Tensor], memory: Memory
                    ) -> tuple[Tensor, State, Optional[Tensor], Tensor]:
        """One step: previous tokens (B,) → (logits (B, V_t), state, feed h̃ (B, H) or None, weights (B, S))."""
        x = self.drop(self.tgt_embedding(tokens)).unsqueeze(1)  # (B, 1, E)
        if self.input_feed:
            x = torch.cat([x, feed.unsqueeze(1)], dim=-1)  # (B, 1, E + H)
        dec_out, state = self.decoder(x, state)  # (B, 1, H)
        h_tilde, weights = self._attend(dec_out, memory)  # (B, 1, H), (B, 1, S)
        logits = self.out(self.drop(h_tilde)).squeeze(1)  # (B, V_t)
        return logits, state, (h_tilde.squeeze(1) if self.input_feed else None), weights.squeeze(1)

    def forward(self, src: Tensor, lengths: Tensor, tgt_in: Tensor, return_attention: bool = False):
        """Teacher forcing: src (B, S), lengths (B,), tgt_in (B, T) = <s> y_1 … → logits (B, T, V_t).

        With return_attention, (logits, weights (B, T, S)).
        """
        memory, state = self.encode(src, lengths)
        if not self.input_feed:
            dec_out, _ = self.decoder(self.drop(self.tgt_embedding(tgt_in)), state)  # (B, T, H)
            h_tilde, weights = self._attend(dec_out, memory)  # (B, T, H), (B, T, S)
            logits = self.out(self.drop(h_tilde))  # (B, T, V_t)
        else:
            feed, steps, maps = self.initial_feed(state), [], []
            for t in range(tgt_in.shape[1]):
                logits_t, state, feed, w = self.decode_step(tgt_in[:, t], state, feed, memory)
                steps.append(logits_t)
                maps.append(w)
            logits, weights = torch.stack(steps, 1), torch.stack(maps, 1)  # (B, T, V_t), (B, T, S)
        return (logits, weights) if return_attention else logits


__all__ = ["ATTENTIONS", "Attention", "Memory", "Seq2Seq"]
