"""Gradient flow: how much of the error at the last step reaches each earlier step.

For a loss L read at the final step T-1 of a sequence, the vanishing-gradient argument of
Hochreiter (1991) and Section 3 of Hochreiter & Schmidhuber (1997) is about ‖∂L/∂h_t‖ as a
function of the lag T-1-t: through a plain RNN it is multiplied at every step by
W_hhᵀ·diag(act'), so it shrinks (or grows) geometrically; the LSTM's cell has the additive path
c_t = f_t ⊙ c_{t-1} + …, so ∂L/∂c_t is carried back scaled only by the forget gates.

Method (chosen to be checkable): the model's own weights are run through an explicit Python
loop over steps — for an LSTM the reference backend's step function (lstm_cell_step, so
peephole, coupled and LayerNorm cores are measured by the same equations the module runs), for
a plain RNN its one-line update — keeping every h_t and c_t as a graph node, and
``torch.autograd.grad`` gives the *total* derivative of L with respect to each of them (through
all later steps, not just the direct path). The loop's outputs are checked against the model's
own forward (any backend) before use, so the measured graph is the model's graph; what the
loop cannot repeat (the random masks of zoneout and the dropouts in training mode; zoneout in
eval mode is its expectation, as in the module) fails that check instead of giving a wrong
picture.

Shape legend: B batch, T steps, I inputs, H hidden units.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .._masking import zoneout_blend
from ..kernels.reference import input_projection, lstm_cell_step
from ..kernels.types import LSTMStepOptions
from ..lstm import LSTM
from ..rnn import RNN


def unrolled_states(core, x: Tensor) -> tuple[list[Tensor], Optional[list[Tensor]]]:
    """Every step's h_t (and c_t for an LSTM) of a one-layer, one-direction core, as graph nodes.

    Args:
        core: lk.LSTM or lk.RNN with num_layers=1, unidirectional, no projection, batch_first.
        x: (B, T, I).
    Returns:
        hs: T tensors (B, H); cs: T tensors (B, H) for an LSTM, else None.
    """
    if core.num_layers != 1 or core.bidirectional or getattr(core, "proj_size", 0):
        raise ValueError("gradient flow is measured on one-layer, unidirectional cores without projection, "
                         f"got num_layers={core.num_layers}, bidirectional={core.bidirectional}")
    if not core.batch_first:
        raise ValueError("gradient flow expects a batch_first core (x is (B, T, I))")
    B, T, _ = x.shape
    H = core.hidden_size
    h = x.new_zeros(B, H)
    hs: list[Tensor] = []
    if isinstance(core, LSTM):
        (p,), = core._layer_params()  # the layer's weights as the backends see them
        opts = LSTMStepOptions(coupled=core.options.coupled, ln_eps=core.options.layer_norm_eps)
        x_proj = input_projection(x.transpose(0, 1), p, opts.ln_eps).unbind(0)  # T × (B, G·H)
        c = x.new_zeros(B, H)
        cs: list[Tensor] = []
        z_c, z_h = core.options.zoneout
        for t in range(T):
            h_new, c_new, _ = lstm_cell_step(x_proj[t], h, c, p, opts)
            h, c = zoneout_blend(h_new, h, z_h), zoneout_blend(c_new, c, z_c)  # zoneout's eval-mode expectation
            hs.append(h)
            cs.append(c)
        return hs, cs
    if isinstance(core, RNN):
        b_ih = core.bias_ih_l0 if core.bias else None
        b_hh = core.bias_hh_l0 if core.bias else None
        x_proj = F.linear(x, core.weight_ih_l0, b_ih).unbind(1)  # T × (B, H)
        act = torch.tanh if core.nonlinearity == "tanh" else torch.relu
        w_hh = core.weight_hh_l0
        for t in range(T):
            h = act(x_proj[t] + F.linear(h, w_hh, b_hh))
            hs.append(h)
        return hs, None
    raise TypeError(f"core must be lk.LSTM or lk.RNN, got {type(core).__name__}")


def gradient_flow(core, head: Callable[[Tensor], Tensor], x: Tensor,
                  loss_fn: Callable[[Tensor], Tensor], check: bool = True) -> dict[str, Optional[Tensor]]:
    """‖∂L/∂h_t‖ and ‖∂L/∂c_t‖ for every step t, where L is read at the last step only.

    Args:
        core: one-layer batch_first lk.LSTM or lk.RNN.
        head: maps the last hidden state (B, H) to outputs (B, O).
        x: (B, T, I) inputs, all sequences T steps long.
        loss_fn: outputs (B, O) → per-sequence losses (B,); each sequence's loss is
            differentiated on its own (they are summed, and no sequence's h depends on another's).
        check: first compare the unrolled h_t with the core's own forward (atol 1e-5 in float32).

    Returns:
        {"lag": (T,) lags T-1-t, "h": (T,) mean over sequences of ‖∂L_b/∂h_{t,b}‖,
         "c": the same for c_t (LSTM) or None}, indexed by t (so lag decreases along the axis).
    """
    hs, cs = unrolled_states(core, x)
    if check:
        with torch.no_grad():
            ref, _ = core(x)  # (B, T, H)
            got = torch.stack(hs, 1)
            if not torch.allclose(got, ref, atol=1e-5 if x.dtype == torch.float32 else 1e-10, rtol=1e-4):
                err = (got - ref).abs().max().item()
                raise RuntimeError(f"the unrolled loop does not reproduce the core's forward (max error {err:.3g})")
    loss = loss_fn(head(hs[-1])).sum()
    nodes = hs + (cs or [])
    grads = torch.autograd.grad(loss, nodes, allow_unused=True)
    grads = [torch.zeros_like(n) if g is None else g for g, n in zip(grads, nodes)]
    T = len(hs)
    h = torch.stack([g.norm(dim=-1).mean() for g in grads[:T]])
    c = torch.stack([g.norm(dim=-1).mean() for g in grads[T:]]) if cs is not None else None
    return {"lag": torch.arange(T - 1, -1, -1), "h": h.detach(), "c": None if c is None else c.detach()}


def task_gradient_flow(model, task, n: int = 64, seed: int = 0) -> dict[str, Optional[Tensor]]:
    """gradient_flow for a SequenceModel on n sequences of a LagTask, loss at the last step.

    Sequences are cropped to the batch's shortest length so that every one ends at the same
    step; the loss is the task's own at that step (squared error for regression, cross-entropy
    of the last step's target for classification).
    """
    batch = task.sample(n, torch.Generator().manual_seed(seed))
    T = int(batch.lengths.min())
    x = batch.x[:, :T]
    if task.kind == "regression":
        target = batch.target
        loss_fn = lambda y: (y.squeeze(-1) - target) ** 2  # noqa: E731
    else:
        target = batch.target if task.readout == "last" else batch.target[:, T - 1]
        loss_fn = lambda y: F.cross_entropy(y, target, reduction="none")  # noqa: E731
    return gradient_flow(model.core, model.head, x, loss_fn)


def plot_gradient_flow(curves: dict[str, dict[str, Optional[Tensor]]], path: str, title: str = "") -> str:
    """One PNG: ‖∂L/∂h_t‖ (left) and ‖∂L/∂c_t‖ (right) against the lag, log scale.

    curves: label → a gradient_flow result, e.g. {"LSTM untrained": …, "RNN trained": …}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    styles = {"lstm": "tab:blue", "rnn": "tab:red"}
    for label, r in curves.items():
        color = styles["rnn" if "rnn" in label.lower() else "lstm"]
        ls = "-" if "trained" in label.lower() and "untrained" not in label.lower() else "--"
        floor = 1e-30  # log axes cannot show exact zeros
        axes[0].semilogy(r["lag"].numpy(), r["h"].clamp_min(floor).numpy(), ls, color=color, label=label)
        if r.get("c") is not None:
            axes[1].semilogy(r["lag"].numpy(), r["c"].clamp_min(floor).numpy(), ls, color=color, label=label)
    axes[0].set_title("‖∂L/∂h_t‖  (hidden state)")
    axes[1].set_title("‖∂L/∂c_t‖  (LSTM memory cell)")
    for ax in axes:
        ax.set_xlabel("lag  T−1−t  (steps back from the loss)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean gradient norm")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
