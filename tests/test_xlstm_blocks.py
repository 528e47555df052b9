"""xLSTM residual blocks and lk.xLSTMBlockStack: the mixes, causality, validation, and that a
small stack learns a task that needs memory."""
from __future__ import annotations

import pytest
import torch

import lstmkit as lk
from lstmkit.xlstm.blocks import block_kinds


def test_ratios_and_indices_place_the_blocks():
    assert block_kinds(8, "7:1") == ["m"] * 7 + ["s"]
    assert block_kinds(4, "1:1") == ["m", "s", "m", "s"]
    assert block_kinds(3, "1:0") == ["m"] * 3 and block_kinds(2, "0:1") == ["s"] * 2
    assert block_kinds(4, [0, 2]) == ["s", "m", "s", "m"]
    stack = lk.xLSTMBlockStack(8, num_blocks=8, num_heads=2)
    assert [type(b).__name__ for b in stack.blocks] == ["mLSTMBlock"] * 7 + ["sLSTMBlock"]


@pytest.mark.parametrize("slstm_at", ["1:1", "0:1", "1:0"])
def test_stack_is_causal(slstm_at):
    """Output at step t depends on inputs up to t only (convolutions pad on the left, cells run forward)."""
    torch.manual_seed(0)
    stack = lk.xLSTMBlockStack(8, num_blocks=2, slstm_at=slstm_at, num_heads=2, chunk_size=4).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64, requires_grad=True)
    y = stack(x)
    (g,) = torch.autograd.grad((y[:, 4] * torch.randn(8, dtype=torch.float64)).sum(), x)  # (the plain sum of a LayerNorm is constant)
    assert (g[:, 5:] == 0).all() and (g[:, :5].abs().sum(-1) > 0).all()


def test_fused_and_reference_slstm_blocks_agree():
    torch.manual_seed(1)
    stack = lk.xLSTMBlockStack(8, num_blocks=2, slstm_at="1:1", num_heads=2).double()
    x = torch.randn(3, 7, 8, dtype=torch.float64)
    y_auto = stack(x)
    for block in stack.blocks:
        if isinstance(block, lk.xlstm.sLSTMBlock):
            block.cell.backend = "reference"
    torch.testing.assert_close(stack(x), y_auto, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_blocks=3, slstm_at="7:1"), "num_blocks=3 must be a multiple of 8"),
        (dict(num_blocks=2, slstm_at="seven"), "slstm_at as a ratio must look like '7:1'"),
        (dict(num_blocks=2, slstm_at=[2]), r"slstm_at must hold block indices in \[0, 2\)"),
        (dict(num_blocks=2, slstm_at="1:1", num_heads=3), "num_heads=3 must divide"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lk.xLSTMBlockStack(8, **kwargs)
    stack = lk.xLSTMBlockStack(8, num_blocks=1, slstm_at="1:0", num_heads=2)
    with pytest.raises(ValueError, match=r"input must be \(batch, time, embedding_dim=8\), got \(2, 5, 4\)"):
        stack(torch.randn(2, 5, 4))


def test_a_small_stack_learns_a_task_that_needs_memory():
    """Next-token prediction on sequences that repeat a random 3-token pattern: from step 3 on, the
    next token is the one 3 steps back. Chance is log 8 = 2.08 nats."""
    torch.manual_seed(0)
    V, E, T, B = 8, 16, 24, 16
    model = torch.nn.Sequential(torch.nn.Embedding(V, E), lk.xLSTMBlockStack(E, num_blocks=2, slstm_at="1:1", num_heads=2),
                                torch.nn.Linear(E, V))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def batch():
        pattern = torch.randint(0, V, (B, 3))
        seq = pattern.repeat(1, T // 3 + 1)[:, : T + 1]
        return seq[:, :-1], seq[:, 1:]

    def loss_of(x, y):
        logits = model(x)[:, 3:]  # steps where the pattern has been seen once
        return torch.nn.functional.cross_entropy(logits.reshape(-1, V), y[:, 3:].reshape(-1))

    with torch.no_grad():
        first = loss_of(*batch()).item()
    for _ in range(60):
        loss = loss_of(*batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = loss_of(*batch()).item()
    assert first > 1.8 and last < 0.5 * first, (first, last)
