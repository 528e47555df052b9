"""The forecasting network: a small ensemble of lk.LSTM encoders with distribution heads, and its losses.

Shapes: B batch, L lookback steps, C input channels (target + covariates), M ensemble members,
S output steps (horizon for "direct", 1 for "recursive"), K output channels (1 for "direct",
C for "recursive": every channel is forecast so it can be fed back), Q quantiles.

Heads on the last hidden state h_L of each member:
    "gaussian":  mu (M, B, S, K), sigma = softplus(·) + 1e-3 (M, B, S, K);  loss = Gaussian NLL
    "quantile":  q (M, B, S, K, Q), sorted along Q (no crossing);           loss = pinball
    "mse":       mu (M, B, S, K);                                           loss = squared error
Members are trained jointly on the summed loss; their parameters do not interact, so this is
the same as training M models from M initialisations, in one pass.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...lstm import LSTM

LOSSES = ("gaussian", "quantile", "mse")


class Member(nn.Module):
    def __init__(self, n_in: int, hidden: int, layers: int, n_out: int, dropout: float, backend: str,
                 **lstm_kwargs) -> None:
        super().__init__()
        self.lstm = LSTM(n_in, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0,
                         backend=backend, **lstm_kwargs)
        self.head = nn.Linear(self.lstm.state_size, n_out)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)  # (B, L, P)
        return self.head(out[:, -1])  # (B, n_out)


class ForecastNet(nn.Module):
    """M members mapping a window (B, L, C) to distribution parameters for S steps × K channels."""

    def __init__(self, n_in: int, out_steps: int, out_channels: int, *, hidden_size: int = 32, num_layers: int = 1,
                 loss: str = "gaussian", quantiles: Sequence[float] = (0.05, 0.5, 0.95), members: int = 1,
                 dropout: float = 0.0, backend: str = "auto", **lstm_kwargs) -> None:
        """lstm_kwargs: the ``[lstm]`` section's variants, passed to every member's lk.LSTM."""
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        self.loss_kind, self.S, self.K = loss, out_steps, out_channels
        self.quantiles = tuple(float(q) for q in quantiles)
        self.P = {"gaussian": 2, "quantile": len(self.quantiles), "mse": 1}[loss]
        self.members = nn.ModuleList(
            Member(n_in, hidden_size, num_layers, out_steps * out_channels * self.P, dropout, backend, **lstm_kwargs)
            for _ in range(members))
        # the preprocessor's training statistics travel with the weights (model.safetensors):
        # [mean, std, trend a, trend b, x_mean (C-1), x_std (C-1)]; see Preprocessor.to_array / load_array
        self.register_buffer("scaler", torch.zeros(2 * n_in + 2, dtype=torch.float64))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raw = torch.stack([m(x) for m in self.members])  # (M, B, S·K·P)
        raw = raw.view(raw.shape[0], raw.shape[1], self.S, self.K, self.P)  # (M, B, S, K, P)
        if self.loss_kind == "gaussian":
            return {"mu": raw[..., 0], "sigma": F.softplus(raw[..., 1]) + 1e-3}
        if self.loss_kind == "quantile":
            q = torch.sort(raw, dim=-1).values  # monotone in the quantile level
            return {"q": q, "mu": q[..., self.quantiles.index(0.5)] if 0.5 in self.quantiles else q.mean(-1)}
        return {"mu": raw[..., 0]}

    def loss(self, out: dict[str, Tensor], y: Tensor) -> Tensor:
        """Mean loss over (B, S, K), summed over members; y (B, S, K)."""
        if self.loss_kind == "gaussian":
            per = F.gaussian_nll_loss(out["mu"], y.expand_as(out["mu"]), out["sigma"] ** 2, reduction="none", full=True)
        elif self.loss_kind == "quantile":
            qs = torch.tensor(self.quantiles, dtype=y.dtype, device=y.device)
            diff = y.unsqueeze(-1) - out["q"]  # (M, B, S, K, Q)
            per = torch.maximum(qs * diff, (qs - 1) * diff).mean(-1)
        else:
            per = (out["mu"] - y) ** 2
        return per.mean(dim=(1, 2, 3)).sum()
