"""Input and state plumbing shared by lk.sLSTM and lk.mLSTM (the recurrences live elsewhere).

Brings the caller's layout (time-major, batch_first or unbatched) to time-major (T, B, I),
checks lengths and initial states with one clear error each, and restores the layout of the
outputs and recorded traces.

Shape legend: T steps, B batch, I input features, L layers, D directions.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Union

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import _checks as check


class Prepared(NamedTuple):
    x: Tensor  # (T, B, I) time-major, contiguous
    batched: bool
    lengths: Optional[Tensor]  # (B,) int64 on CPU, or None when every sequence runs T steps
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
    check.finite("input", x)
    all_lengths = None
    if lengths is not None:
        lengths = all_lengths = check.lengths_tensor(lengths, B, T)
        if bool((lengths == T).all()):
            lengths = None
    return Prepared(x.contiguous(), batched, lengths, packed, all_lengths)


def initial_state(hx: Any, names: Sequence[str], shapes: Sequence[tuple[int, ...]], batched: bool, weight: Tensor,
                  defaults: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """hx as a tuple of tensors, each shaped as in shapes (the batch dimension, index 1, absent
    for unbatched input); the defaults (batched shapes) when hx is None."""
    if hx is None:
        return tuple(defaults)
    if not isinstance(hx, (tuple, list)) or len(hx) != len(names):
        raise TypeError(f"hx must be a tuple of {len(names)} tensors ({', '.join(names)}), got {type(hx).__name__}"
                        + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else ""))
    state = []
    for name, t, shape in zip(names, hx, shapes):
        expected = shape if batched else shape[:1] + shape[2:]
        check.state_tensor(name, t, tuple(expected), weight)
        check.finite(name, t)
        state.append(t if batched else t.unsqueeze(1))
    return tuple(state)


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
