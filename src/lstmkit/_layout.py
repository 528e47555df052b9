"""The caller's input layouts, shared by every recurrent module (lk.LSTM, lk.RNN, lk.sLSTM, lk.mLSTM).

Brings the caller's layout (time-major, batch_first, unbatched or a PackedSequence) to
time-major (T, B, I), checks the input and lengths with one clear error each, and restores the
layout of the outputs and recorded traces. Value checks (finite input, lengths in [1, T]) run in
eager only: a traced call (compile, export, meta, torch.func) keeps its shape, dtype and device
checks and its lengths as given (see _tracing).

Shape legend: T steps, B batch, I input features, L layers, D directions.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _checks as check
from ._tracing import values_hidden


class Prepared(NamedTuple):
    x: Tensor  # (T, B, I) time-major, contiguous
    batched: bool
    lengths: Optional[Tensor]  # (B,) int64, or None when every sequence runs T steps (eager) or none were given
    packed: Optional[PackedSequence] = None  # the caller's PackedSequence, to pack the output alike
    all_lengths: Optional[Tensor] = None  # lengths even when all are T (repacking needs them)


def prepare_input(input: Any, input_size: int, batch_first: bool, weight: Tensor, lengths: Any) -> Prepared:
    """Validate the input and lengths; return them time-major (a PackedSequence gives its lengths)."""
    packed = input if isinstance(input, PackedSequence) else None
    if packed is not None:
        if lengths is not None:
            raise ValueError("give either a PackedSequence or lengths=, not both: a PackedSequence carries its lengths")
        check.same_dtype_device("input", packed.data, weight)
        if packed.data.dim() != 2 or packed.data.shape[-1] != input_size:
            raise ValueError(f"PackedSequence data must be (total_steps, input_size={input_size}), got {tuple(packed.data.shape)}")
        x, lengths = pad_packed_sequence(packed)  # (T, B, I), lengths in the caller's batch order
        batched = True
    else:
        check.input_tensor(input, input_size, weight)
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)  # (T, B=1, I) unbatched
        if batched and batch_first:
            x = x.transpose(0, 1)  # (B, T, I) -> (T, B, I)
    T, B = x.shape[0], x.shape[1]
    check.sizes(T, B)
    traced = values_hidden(x)
    if not traced:  # values are checked in eager; traced calls get the kernels' own checks
        check.finite("input", x)
    all_lengths = None
    if lengths is not None:
        lengths = all_lengths = check.traced_lengths(lengths, B) if traced else check.lengths_tensor(lengths, B, T)
        # all-full lengths run as a plain call in eager; a traced call cannot look, so passes them on
        if not traced and bool((lengths == T).all()):
            lengths = None
    return Prepared(x.contiguous(), batched, lengths, packed, all_lengths)


def restore_output(out: Tensor, prep: Prepared, batch_first: bool) -> Union[Tensor, PackedSequence]:
    """(T, B, ·) back to the caller's layout: packed like the input, batch-first, or unbatched."""
    batched = prep.batched
    if prep.packed is not None:
        like = prep.packed
        lengths = prep.all_lengths
        if like.sorted_indices is not None:
            out = out.index_select(1, like.sorted_indices.to(out.device))
            lengths = lengths[like.sorted_indices.cpu()]
        data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
        return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
    if not batched:
        return out.squeeze(1)
    return out.transpose(0, 1) if batch_first else out


def restore_trace(trace: Optional[NamedTuple], batched: bool, batch_first: bool) -> Optional[NamedTuple]:
    """A stacked trace (L, D, T, B, ·) to (L, D, B, T, ·) with batch_first, (L, D, T, ·) unbatched."""
    if trace is None:
        return None
    if not batched:
        return type(trace)(*(v.squeeze(3) for v in trace))
    if batch_first:
        return type(trace)(*(v.transpose(2, 3) for v in trace))
    return trace
