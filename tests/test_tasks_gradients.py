"""Gradient flow on cases whose answer is known in closed form."""
from __future__ import annotations

import math

import pytest
import torch

import lstmkit as lk
from lstmkit.paper1997 import make_task
from lstmkit.paper1997.gradients import gradient_flow, plot_gradient_flow, task_gradient_flow, unrolled_states
from lstmkit.paper1997.model import build_model


@pytest.mark.parametrize("a", [0.5, 0.9, 1.1])
def test_linear_rnn_gradient_decays_as_a_to_the_lag(a):
    """relu RNN with W_hh = a·I and positive states is linear: ∂L/∂h_t = a^(T-1-t) ∂L/∂h_{T-1}."""
    torch.manual_seed(0)
    T, H = 30, 4
    rnn = lk.RNN(3, H, nonlinearity="relu", batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(a * torch.eye(H, dtype=torch.float64))
        rnn.weight_ih_l0.uniform_(0.1, 1.0)  # positive inputs, positive weights → relu never clips
        rnn.bias_ih_l0.fill_(0.1)
        rnn.bias_hh_l0.zero_()
    x = torch.rand(5, T, 3, dtype=torch.float64)
    head = torch.nn.Linear(H, 1, dtype=torch.float64)
    r = gradient_flow(rnn, head, x, lambda y: y.squeeze(-1))  # L = w·h_{T-1} + b per sequence
    expected = head.weight.norm() * a ** r["lag"].double()
    torch.testing.assert_close(r["h"].double(), expected, rtol=1e-10, atol=1e-300)
    assert r["c"] is None


def test_lstm_cell_gradient_is_carried_by_the_forget_gate():
    """W_hh = 0 and constant gates: ∂L/∂c_t = σ(b_f)^(T-1-t) ∂L/∂c_{T-1}, and ∂L/∂h_t = 0 for t < T-1."""
    torch.manual_seed(1)
    T, H, b_f = 25, 3, 2.0
    lstm = lk.LSTM(2, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_hh_l0.zero_()
        lstm.weight_ih_l0[H : 2 * H].zero_()  # the forget gate sees no input: f = σ(b_f) always
        lstm.bias_ih_l0[H : 2 * H].fill_(b_f)
        lstm.bias_hh_l0[H : 2 * H].zero_()
    x = torch.randn(4, T, 2, dtype=torch.float64)
    head = torch.nn.Linear(H, 1, dtype=torch.float64)
    r = gradient_flow(lstm, head, x, lambda y: y.squeeze(-1) ** 2)
    f = 1.0 / (1.0 + math.exp(-b_f))
    # the per-sequence norms scale by the same factor, so their mean does too
    torch.testing.assert_close(r["c"], r["c"][-1] * f ** r["lag"].double(), rtol=1e-10, atol=0.0)
    assert (r["h"][:-1] == 0).all() and r["h"][-1] > 0


def test_unrolled_loop_matches_the_cores_forward_on_every_backend():
    torch.manual_seed(2)
    x = torch.randn(3, 12, 5)
    for core in (lk.LSTM(5, 7, batch_first=True), lk.RNN(5, 7, batch_first=True)):
        hs, cs = unrolled_states(core, x)
        out, _ = core(x)
        torch.testing.assert_close(torch.stack(hs, 1), out, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one-layer"):
        unrolled_states(lk.LSTM(5, 7, num_layers=2, batch_first=True), x)


def test_untrained_rnn_gradient_vanishes_faster_than_the_lstm_cell(tmp_path):
    task = make_task("adding", 60)
    torch.manual_seed(0)
    lstm, rnn = build_model("lstm", task, 32), build_model("rnn", task, 32)
    rl, rr = task_gradient_flow(lstm, task, 16), task_gradient_flow(rnn, task, 16)
    far = rl["lag"] >= 40
    # ratio far/near: the LSTM's cell keeps orders of magnitude more than the RNN's hidden state
    assert (rl["c"][far].mean() / rl["c"][-1]) > 100 * (rr["h"][far].mean() / rr["h"][-1])
    path = plot_gradient_flow({"LSTM untrained": rl, "RNN untrained": rr}, str(tmp_path / "g.png"))
    assert (tmp_path / "g.png").stat().st_size > 10_000 and path.endswith("g.png")
