"""Truncated BPTT in the Trainer: state values cross window boundaries, gradients do not, and
the state resets at sequence boundaries (new batch) or per row at document boundaries."""
from __future__ import annotations

import torch
from torch import nn

import lstmkit as lk
from lstmkit.train import Task, TrainConfig, Trainer
from lstmkit.train.task import split_time

B, T, K, I, H = 2, 8, 4, 2, 3  # batch, steps per batch, TBPTT window, inputs, hidden


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = lk.LSTM(I, H, batch_first=True, backend="reference", dtype=torch.float64)
        self.out = nn.Linear(H, 1, dtype=torch.float64)

    def forward(self, x, state=None):
        h, state = self.rnn(x, state)
        return self.out(h).squeeze(-1), state


class Spy(Task):
    """Records the state each window receives and the gradient each step computes."""

    def __init__(self, batches):
        self.batches = batches
        self.incoming, self.grads = [], []

    def build_model(self):
        torch.manual_seed(0)
        net = Net()
        net.rnn.weight_hh_l0.register_hook(lambda g: self.grads.append(g.clone()))
        return net

    def train_batches(self, start, *, batch_size, rank=0, world_size=1):
        for k in range(start, len(self.batches)):
            yield self.batches[k]

    def loss(self, model, batch, state):
        self.incoming.append(state)
        y, state = model(batch["x"], state)
        return ((y - batch["y"]) ** 2).mean(), state


def make_batch(seed, reset=None):
    g = torch.Generator().manual_seed(seed)
    b = {"x": torch.randn(B, T, I, generator=g, dtype=torch.float64),
         "y": torch.randn(B, T, generator=g, dtype=torch.float64)}
    if reset is not None:
        b["reset"] = torch.tensor(reset)
    return b


def fit(task, steps):
    cfg = TrainConfig(steps=steps, batch_size=B, tbptt=K, optimizer="sgd", lr=0.0, weight_decay=0.0,
                      clip_norm=0.0, schedule="constant", progress="off", plot=False)
    trainer = Trainer(task, cfg)
    trainer.fit()
    return trainer.model


def window_grad(model, x, y, state):
    model.zero_grad()
    out, _ = model(x, state)
    ((out - y) ** 2).mean().backward()
    return model.rnn.weight_hh_l0.grad.clone()


def test_state_values_cross_the_window_boundary_and_gradients_do_not():
    batch = make_batch(1)
    task = Spy([batch])
    model = fit(task, steps=2)  # lr = 0: the weights stay as built
    x1, x2 = batch["x"][:, :K], batch["x"][:, K:]
    y2 = batch["y"][:, K:]
    assert task.incoming[0] is None
    with torch.no_grad():
        _, (h1, c1) = model(x1)
    h_in, c_in = task.incoming[1]
    torch.testing.assert_close(h_in, h1, rtol=1e-12, atol=1e-12)  # values crossed
    torch.testing.assert_close(c_in, c1, rtol=1e-12, atol=1e-12)
    assert not h_in.requires_grad and not c_in.requires_grad  # the graph was cut

    # Step 2's gradient is that of window 2 from a constant state, not full BPTT through window 1.
    truncated = window_grad(model, x2, y2, (h1, c1))
    model.zero_grad()
    out, _ = model(batch["x"])
    ((out[:, K:] - y2) ** 2).mean().backward()
    full = model.rnn.weight_hh_l0.grad.clone()
    assert (truncated - full).abs().max() > 1e-6  # the two differ, so the check below can fail
    torch.testing.assert_close(task.grads[1], truncated, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(task.grads[0], window_grad(model, x1, batch["y"][:, :K], None),
                               rtol=1e-10, atol=1e-12)


def test_a_new_batch_starts_from_a_zero_state():
    task = Spy([make_batch(1), make_batch(2)])
    fit(task, steps=3)
    assert task.incoming[1] is not None
    assert task.incoming[2] is None  # window 1 of batch 2


def test_reset_mask_keeps_rows_that_continue_and_zeroes_rows_that_start_a_document():
    first, second = make_batch(1), make_batch(2, reset=[True, False])
    task = Spy([first, second])
    model = fit(task, steps=3)
    with torch.no_grad():
        _, (h_end, c_end) = model(first["x"])  # state at the end of batch 1
    h_in, c_in = task.incoming[2]
    assert torch.all(h_in[:, 0] == 0) and torch.all(c_in[:, 0] == 0)  # row 0: a new document
    torch.testing.assert_close(h_in[:, 1], h_end[:, 1], rtol=1e-12, atol=1e-12)  # row 1 continues
    torch.testing.assert_close(c_in[:, 1], c_end[:, 1], rtol=1e-12, atol=1e-12)


def test_split_time_cuts_time_dimension_and_keeps_per_sequence_tensors():
    batch = {"x": torch.arange(2 * 10).view(2, 10), "label": torch.tensor([3, 4])}
    windows = split_time(batch, 4)
    assert [w["x"].shape[1] for w in windows] == [4, 4, 2]
    assert torch.equal(torch.cat([w["x"] for w in windows], 1), batch["x"])
    assert all(torch.equal(w["label"], batch["label"]) for w in windows)
