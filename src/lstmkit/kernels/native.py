"""The native backend: torch's own fused RNN kernels (oneDNN on CPU, cuDNN on GPU).

Only plain configurations: no per-step gates, no lstmkit variants. Right-padded batches with
lengths go through torch's packed-sequence path, so final states are each sequence's own.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .backend import Backend, RunSpec, register_backend

_OPS = {"lstm": torch.lstm, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}


def _flat_weights(params: Sequence[Sequence[NamedTuple]]) -> list[Tensor]:
    """torch's flat weight list: per layer, per direction: w_ih, w_hh, [b_ih, b_hh], [w_hr]."""
    return [w for layer in params for p in layer for w in p if w is not None]


class NativeBackend(Backend):
    name = "native"

    def unsupported(self, spec: RunSpec) -> Optional[str]:
        if spec.record:
            return "torch's kernels do not expose per-step gates (return_gates / return_states)"
        if spec.variants:
            return f"torch's kernels have no {', '.join(spec.variants)}"
        return None

    def run(self, spec, x, state, params, lengths):
        op = _OPS[spec.cell]
        weights = _flat_weights(params)
        hx = list(state) if spec.cell == "lstm" else state[0]
        args = (weights, spec.bias, spec.num_layers, spec.dropout, spec.training, spec.bidirectional)
        if lengths is None:
            result = op(x, hx, *args, False)
            return result[0], tuple(result[1:]), None
        T = x.shape[0]
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        order, unorder = packed.sorted_indices, packed.unsorted_indices
        hx = [h.index_select(1, order) for h in hx] if spec.cell == "lstm" else hx.index_select(1, order)
        result = op(packed.data, packed.batch_sizes, hx, *args)
        out_packed = PackedSequence(result[0], packed.batch_sizes, order, unorder)
        out, _ = pad_packed_sequence(out_packed, total_length=T)  # (T, B, ·), original order
        return out, tuple(s.index_select(1, unorder) for s in result[1:]), None


register_backend(NativeBackend())
