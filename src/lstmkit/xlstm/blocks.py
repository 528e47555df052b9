r"""xLSTM residual blocks and their stack (Beck et al. 2024, section 2.4 and appendix).

Shape legend: B batch, T steps, E embedding size (the residual stream), all batch-first.

mLSTM block ("pre up-projection": the memory works in the wider space)::

    u, g = split(W_up LN(x))                         each (B, T, p·E), p = mlstm_proj_factor (2)
    c    = swish(CausalConv(u))                      depthwise over time, kernel conv_kernel (4)
    h    = GroupNorm_heads(mLSTM(c)) + s ⊙ c         s: a learnable skip per unit
    out  = x + W_down (h ⊙ swish(g))

sLSTM block ("post up-projection": the memory works in E, a gated feed-forward after it)::

    y    = x + GroupNorm_heads(sLSTM(swish(CausalConv(LN(x)))))
    out  = y + W_down (GeLU(W_gate LN(y)) ⊙ W_up LN(y))   feed-forward width f·E, f = ffn_proj_factor (4/3)

Simplifications against the paper, said plainly: the paper's mLSTM block takes q and k from the
convolution's output but v from u before it, and its sLSTM block feeds only i and f from the
convolution (z and o from LN(x)); here each cell takes all its projections from the
convolution's output, so lk.mLSTM and lk.sLSTM are used as they are. Blocks take whole
sequences (no state carried across calls: the convolution would need its last steps too).
"""
from __future__ import annotations

import re
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks as check
from .mlstm import mLSTM
from .slstm import sLSTM


class CausalConv1d(nn.Module):
    """Depthwise convolution over time that sees only the current and past steps: (B, T, C) -> (B, T, C)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))  # (B, C, k − 1 + T): left padding only
        return self.conv(y).transpose(1, 2)


class HeadNorm(nn.Module):
    """GroupNorm with one group per head over the last dimension: (B, T, H) -> (B, T, H)."""

    def __init__(self, num_heads: int, size: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(num_heads, size)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class mLSTMBlock(nn.Module):
    """The mLSTM residual block (see the module docstring for its equations)."""

    def __init__(self, embedding_dim: int, num_heads: int = 4, proj_factor: float = 2.0, conv_kernel: int = 4,
                 chunk_size: int = 64) -> None:
        super().__init__()
        inner = int(round(proj_factor * embedding_dim))
        if inner % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the mLSTM block's inner size "
                             f"round({proj_factor} · {embedding_dim}) = {inner}")
        self.norm = nn.LayerNorm(embedding_dim)
        self.up = nn.Linear(embedding_dim, 2 * inner)
        self.conv = CausalConv1d(inner, conv_kernel)
        self.cell = mLSTM(inner, inner, batch_first=True, num_heads=num_heads, chunk_size=chunk_size)
        self.head_norm = HeadNorm(num_heads, inner)
        self.skip = nn.Parameter(torch.ones(inner))
        self.down = nn.Linear(inner, embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        u, g = self.up(self.norm(x)).chunk(2, dim=-1)  # each (B, T, inner)
        c = F.silu(self.conv(u))
        h = self.head_norm(self.cell(c)[0]) + self.skip * c
        return x + self.down(h * F.silu(g))


class sLSTMBlock(nn.Module):
    """The sLSTM residual block with its gated feed-forward (see the module docstring)."""

    def __init__(self, embedding_dim: int, num_heads: int = 4, ffn_proj_factor: float = 4 / 3, conv_kernel: int = 4,
                 backend: str = "auto") -> None:
        super().__init__()
        if embedding_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide embedding_dim={embedding_dim} (the sLSTM block's size)")
        ffn = int(round(ffn_proj_factor * embedding_dim))
        self.norm = nn.LayerNorm(embedding_dim)
        self.conv = CausalConv1d(embedding_dim, conv_kernel)
        self.cell = sLSTM(embedding_dim, embedding_dim, batch_first=True, num_heads=num_heads, backend=backend)
        self.head_norm = HeadNorm(num_heads, embedding_dim)
        self.ffn_norm = nn.LayerNorm(embedding_dim)
        self.ffn_in = nn.Linear(embedding_dim, 2 * ffn)  # gate and value halves
        self.ffn_out = nn.Linear(ffn, embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        y = x + self.head_norm(self.cell(F.silu(self.conv(self.norm(x))))[0])
        gate, value = self.ffn_in(self.ffn_norm(y)).chunk(2, dim=-1)
        return y + self.ffn_out(F.gelu(gate) * value)


def block_kinds(num_blocks: int, slstm_at: Union[str, Sequence[int]]) -> list[str]:
    """"m" / "s" per block. slstm_at: block indices that are sLSTM, or a ratio "m:s" (the paper's
    xLSTM[m:s]): each group of m + s consecutive blocks is m mLSTM blocks followed by s sLSTM blocks."""
    if isinstance(slstm_at, str):
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", slstm_at)
        if not match or int(match[1]) + int(match[2]) == 0:
            raise ValueError(f"slstm_at as a ratio must look like '7:1' (mLSTM:sLSTM blocks), got {slstm_at!r}")
        m, s = int(match[1]), int(match[2])
        if num_blocks % (m + s):
            raise ValueError(f"num_blocks={num_blocks} must be a multiple of {m + s} for the ratio {slstm_at!r}")
        return (["m"] * m + ["s"] * s) * (num_blocks // (m + s))
    indices = list(slstm_at)
    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_blocks]
    if bad:
        raise ValueError(f"slstm_at must hold block indices in [0, {num_blocks}), got {bad}")
    return ["s" if i in indices else "m" for i in range(num_blocks)]


class xLSTMBlockStack(nn.Module):
    """A stack of mLSTM and sLSTM residual blocks, then a LayerNorm: (B, T, E) -> (B, T, E).

    Args:
        embedding_dim (int): E, the residual stream's width.
        num_blocks (int, default 8).
        slstm_at (str or sequence of int, default "7:1"): which blocks are sLSTM: a ratio "m:s"
            as the paper's xLSTM[7:1] / [1:0] / [0:1], or a list of block indices.
        num_heads (int, default 4): heads of every cell (must divide E and the mLSTM inner size).
        mlstm_proj_factor (2.0), ffn_proj_factor (4/3), conv_kernel (4), chunk_size (64): see the
            blocks. slstm_backend ("auto" | "reference" | "fused"): the sLSTM cells' backend.

    Example:
        >>> import lstmkit as lk, torch
        >>> stack = lk.xLSTMBlockStack(16, num_blocks=4, slstm_at="3:1")
        >>> [type(b).__name__ for b in stack.blocks]
        ['mLSTMBlock', 'mLSTMBlock', 'mLSTMBlock', 'sLSTMBlock']
        >>> stack(torch.randn(2, 10, 16)).shape
        torch.Size([2, 10, 16])
    """

    def __init__(self, embedding_dim: int, num_blocks: int = 8, slstm_at: Union[str, Sequence[int]] = "7:1", *,
                 num_heads: int = 4, mlstm_proj_factor: float = 2.0, ffn_proj_factor: float = 4 / 3,
                 conv_kernel: int = 4, chunk_size: int = 64, slstm_backend: str = "auto") -> None:
        super().__init__()
        self.embedding_dim = check.positive_int("embedding_dim", embedding_dim)
        self.num_blocks = check.positive_int("num_blocks", num_blocks)
        check.positive_int("num_heads", num_heads)
        check.positive_int("conv_kernel", conv_kernel)
        self.kinds = block_kinds(num_blocks, slstm_at)
        self.blocks = nn.ModuleList(
            mLSTMBlock(embedding_dim, num_heads, mlstm_proj_factor, conv_kernel, chunk_size) if kind == "m"
            else sLSTMBlock(embedding_dim, num_heads, ffn_proj_factor, conv_kernel, slstm_backend)
            for kind in self.kinds
        )
        self.post_norm = nn.LayerNorm(embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.embedding_dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"input must be (batch, time, embedding_dim={self.embedding_dim}), got {shape}")
        for block in self.blocks:
            x = block(x)
        return self.post_norm(x)

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, blocks={''.join(self.kinds)}"
