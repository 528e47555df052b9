"""Random masks the variants draw before dispatch (so a fixed seed gives every backend the same masks).

Zoneout needs two fresh (T, B, ·) Bernoulli masks per layer and direction on every training
forward. Drawn from torch's mt19937 generator they cost as much as a fifth of a fused forward
(S3: 0.62 ms per mask, 5.3 ms per forward), so they come from a counter-based generator instead:
entry i is lane i mod 4 (16 bits, little-endian) of splitmix64((seed + i div 4) · φ), where
φ = 0x9E3779B97F4A7C15 and seed is one draw from torch's default generator, so torch.manual_seed
fixes the masks. The fused extension computes them in parallel C++ when it is loaded; otherwise
the same numbers come from torch ops (slower: int64 arithmetic has no AVX2 multiply).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .._tracing import values_hidden
from . import fused

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_MIX1 = -4658895280553007687    # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685    # 0x94D049BB133111EB


def _shift_right(z: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def splitmix64(count: int, seed: int, device: torch.device | str = "cpu") -> Tensor:
    """splitmix64's output for counters seed, seed + 1, …, seed + count - 1, as int64 (wrapping)."""
    z = torch.arange(count, dtype=torch.int64, device=device).add_(seed).mul_(_GOLDEN)
    z = (z ^ _shift_right(z, 30)).mul_(_MIX1)
    z = (z ^ _shift_right(z, 27)).mul_(_MIX2)
    return z ^ _shift_right(z, 31)


def zoneout_mask(shape: tuple[int, ...], z: float, like: Tensor) -> Tensor:
    """Bernoulli(z) bool mask of `shape` on like's device: True keeps the previous value.

    z is resolved to 1/65536 (|error| < 8e-6): an entry is True when its 16-bit lane, read as
    int16, is below round(z · 65536) − 32768. bool, not float: the kernels read a quarter of the
    bytes.
    """
    if not 0.0 <= z <= 1.0:
        raise ValueError(f"zoneout probability must be in [0, 1], got {z}")
    level = round(z * 65536)
    if level >= 65536:
        return torch.ones(shape, dtype=torch.bool, device=like.device)
    if values_hidden(like):  # traced: no seed can be read; the graph draws its own
        return torch.rand(shape, device=like.device) < level / 65536
    seed = int(torch.empty((), dtype=torch.int64).random_())  # from the default generator: manual_seed fixes it
    ext = fused.loaded_extension()
    if ext is not None and like.device.type == "cpu":
        return ext.zone_mask(list(shape), level, seed)
    n = math.prod(shape)
    bits = splitmix64((n + 3) // 4, seed, like.device)
    return (bits.view(torch.int16)[:n] < level - 32768).view(shape)
