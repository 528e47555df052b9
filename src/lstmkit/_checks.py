"""Validation of constructor arguments and forward inputs.

Every check raises one ValueError or TypeError that names what was expected and what came,
so that bad input never surfaces as a stack trace from inside a matmul.
"""
from __future__ import annotations

import math

from numbers import Integral, Real
from typing import Any, Sequence

import torch
from torch import Tensor


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def input_tensor(x: Any, input_size: int, weight: Tensor) -> Tensor:
    """The input must be a finite floating tensor of rank 2 or 3 matching the weights."""
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor or PackedSequence, got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise ValueError(
            "input must be 3-D (seq_len, batch, input_size) — or (batch, seq_len, input_size) with "
            f"batch_first — or 2-D (seq_len, input_size) unbatched; got {x.dim()}-D of shape {tuple(x.shape)}"
        )
    if x.shape[-1] != input_size:
        raise ValueError(f"input's last dimension must be input_size={input_size}, got {x.shape[-1]} (shape {tuple(x.shape)})")
    same_dtype_device("input", x, weight)
    return x


def same_dtype_device(name: str, t: Tensor, weight: Tensor) -> None:
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor like the weights ({weight.dtype}), got {t.dtype}")
    if t.dtype != weight.dtype:
        raise TypeError(
            f"{name} has dtype {t.dtype} but the weights are {weight.dtype}; convert one of them "
            f"(e.g. module.to({t.dtype}) or {name}.to({weight.dtype}))"
        )
    if t.device != weight.device:
        raise ValueError(f"{name} is on {t.device} but the weights are on {weight.device}")


def finite(name: str, t: Tensor) -> None:
    # One reduction pass instead of isfinite's several (1.7 ms of S1's 24 ms forward): a NaN or
    # ±inf anywhere makes the sum non-finite, so a finite sum clears t. A non-finite sum (or
    # finite values whose sum overflows) gets the exact element-wise count. The sum is tested as a
    # Python number: one tensor op per check, which one-step decoding calls for x, h0 and c0.
    if t.numel() == 0 or math.isfinite(t.sum().item()):
        return
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} NaN or infinite value(s)")


def sizes(T: int, B: int) -> None:
    if B == 0:
        raise ValueError("input has an empty batch (batch size 0); at least one sequence is needed")
    if T == 0:
        raise ValueError("input has zero time steps; every sequence needs at least one step")


def lengths_tensor(lengths: Any, B: int, T: int) -> Tensor:
    """Lengths: B integers in [1, T], as a list or 1-D integer tensor; returned as int64 on CPU."""
    if isinstance(lengths, Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got a tensor of dtype {lengths.dtype}")
        t = lengths.detach().to("cpu", torch.int64)
    else:
        try:
            t = torch.as_tensor(list(lengths))
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"lengths must be a 1-D integer tensor or a sequence of ints, got {type(lengths).__name__}") from None
        if t.numel() and (t.is_floating_point() or t.dtype == torch.bool):
            raise TypeError(f"lengths must hold integers, got {t.dtype}")
        t = t.to(torch.int64)
    if t.dim() != 1 or t.numel() != B:
        raise ValueError(f"lengths must have shape ({B},) — one length per sequence in the batch — got shape {tuple(t.shape)}")
    lo, hi = int(t.min()), int(t.max())
    if lo < 1 or hi > T:
        raise ValueError(f"lengths must lie in [1, {T}] (the padded sequence length), got values from {lo} to {hi}")
    return t


def traced_lengths(lengths: Any, B: int) -> Tensor:
    """Lengths of a traced call (compile, export): shape and dtype are checked here; their range
    [1, T] is checked by the kernel's operator wherever it runs (reading values here would break
    the trace)."""
    if not isinstance(lengths, Tensor) or lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be a 1-D integer tensor when compiling or exporting, got {type(lengths).__name__}"
                        + (f" of dtype {lengths.dtype}" if isinstance(lengths, Tensor) else ""))
    if lengths.dim() != 1 or lengths.shape[0] != B:
        raise ValueError(f"lengths must have shape ({B},) — one length per sequence in the batch — got shape {tuple(lengths.shape)}")
    return lengths.to(torch.int64)


def state_tensor(name: str, t: Any, expected: tuple[int, ...], weight: Tensor) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != expected:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")
    same_dtype_device(name, t, weight)
    return t

