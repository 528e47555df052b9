"""The deterministic masks and blends that recur around the LSTM step, written once.

Shape legend: B batch, T steps, N features of the blended state.

- ``length_mask``: which steps of a right-padded batch are real (t < length).
- ``zoneout_blend``: zoneout's update (Krueger et al. 2016), in training with a sampled
  keep-mask and in eval with its expectation:
      state_t = z ⊙ state_{t-1} + (1 - z) ⊙ new_t
  where z is a bool mask (True keeps the previous value), a tensor of rates, or one rate.

The random keep-masks themselves are drawn by lstmkit.kernels.masks (so every backend sees the
same ones); this module only applies them.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor


def length_mask(lengths: Tensor, T: int) -> Tensor:
    """(B,) lengths → (B, T) bool, True at the steps t < length (on lengths' device)."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


def zoneout_blend(new: Tensor, prev: Tensor, z: Union[Tensor, float]) -> Tensor:
    """z·prev + (1 - z)·new: zoneout's state update (z a bool keep-mask, rates, or one rate)."""
    if isinstance(z, Tensor):
        z = z.to(new.dtype)  # a bool mask becomes 0 / 1 weights
    elif z == 0:
        return new
    return torch.lerp(new, prev, z)
