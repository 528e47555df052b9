"""Every gate and state of an lk.LSTM (or lk.sLSTM, lk.mLSTM) over one input sequence, and the
summaries the explorer shows.

Shape legend: T = steps of the input, I = input features, L = layers, D = directions (1 or 2),
H = hidden size (gates and cell), P = size of h (proj_size if > 0, else H).

    >>> import torch, lstmkit as lk
    >>> from lstmkit.viz import collect_states, memory_span
    >>> lstm = lk.LSTM(3, 4, num_layers=2)
    >>> s = collect_states(lstm, torch.randn(10, 3), labels=list("abcdefghij"))
    >>> s.get("c", layer=1).shape, memory_span(s.get("f", layer=1)).shape
    ((10, 4), (4,))

Memory span of a unit: the cell keeps the fraction f_t of its content at step t, so what it held
after step t is down to ∏_{s=t+1}^{t+k} f_s after k more steps. The unit's span is the median over
start steps t of the first k at which that product falls below 1/2 — "how many steps does what
the cell holds typically survive". A unit that keeps everything (f ≈ 1) until a deliberate reset
every ~20 characters gets a span of about 10–20, what it really remembers; a time-average of f (or
the half-life of the geometric-mean f) would be dragged to ~1 step by the single reset. Steps
whose content outlives the rest of the input count as the cap (default 10·T), so the span of a
unit that never forgets is the cap, meaning "longer than this input shows".

The xLSTM cells record other quantities (SLSTM_QUANTITIES, MLSTM_QUANTITIES): their i and f are
the stabilized gates i' = exp(ĩ − m), f' = exp(log f + m_{t-1} − m), in [0, 1], and n and m are
the normalizer and the stabilizer. Their memory span is taken from the forget gate itself,
f = f'·exp(m_t − m_{t-1}) (σ(f̃), or exp(f̃) capped at 1): the fraction of the memory each step
keeps, which f' is not (f' also carries the change of scale). mLSTM's i, f, n, m are one value
per head; the explorer shows them on each of the head's units, so every quantity is (T, H).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..lstm import LSTM
from ..xlstm import mLSTM, sLSTM

QUANTITIES = ("i", "f", "g", "o", "c", "h")
NAMES = {"i": "input gate", "f": "forget gate", "g": "input node (candidate)", "o": "output gate",
         "c": "memory cell", "h": "hidden state"}
SLSTM_QUANTITIES = ("i", "f", "z", "o", "c", "n", "m", "h")
MLSTM_QUANTITIES = ("i", "f", "o", "n", "m", "h")
XLSTM_NAMES = {"i": "input gate, stabilized exp(ĩ − m)", "f": "forget gate, stabilized", "z": "cell input tanh(z̃)",
               "o": "output gate", "c": "memory cell (stabilized)", "n": "normalizer (stabilized)", "m": "stabilizer",
               "h": "hidden state"}
MLSTM_NAMES = {**XLSTM_NAMES, "i": "input gate of the unit's head, stabilized", "f": "forget gate of the unit's head, stabilized",
               "n": "|nᵀq| of the unit's head (normalizer)", "m": "stabilizer of the unit's head"}


@dataclass
class GateStates:
    """i, f, g, o, c, h of every layer, direction and step of one sequence, as float32 arrays.

    values[q]: (L, D, T, H) for q in i, f, g, o, c; (L, D, T, P) for h.
    labels: T per-step labels (the characters of a text, the dates of a series).
    series: (T,) the series value at each step, for forecasters (None for text).
    quantities, names: what values holds and what each is (the LSTM's by default).
    retention: (L, D, T, H) the fraction of the memory each step keeps, for memory spans, where
        it is not values["f"] (the xLSTM cells, see the module docstring).
    """

    values: dict[str, np.ndarray]
    labels: list[str]
    series: Optional[np.ndarray] = None
    title: str = ""
    meta: dict = field(default_factory=dict)
    quantities: tuple[str, ...] = QUANTITIES
    names: dict[str, str] = field(default_factory=lambda: dict(NAMES))
    retention: Optional[np.ndarray] = None

    @property
    def num_layers(self) -> int:
        return self.values["h"].shape[0]

    @property
    def num_directions(self) -> int:
        return self.values["h"].shape[1]

    @property
    def steps(self) -> int:
        return self.values["h"].shape[2]

    @property
    def hidden_size(self) -> int:
        return self.values["f"].shape[3]

    @property
    def memory(self) -> str:
        """The quantity holding each unit's memory: c, or h for mLSTM (whose memory is a matrix per head)."""
        return "c" if "c" in self.quantities else "h"

    def units(self, quantity: str) -> int:
        return self.values[check_quantity(quantity, self.quantities)].shape[3]

    def kept(self, layer: int = 0, direction: int = 0) -> np.ndarray:
        """(T, H) the fraction of each unit's memory each step keeps: what memory spans are of."""
        f = self.get("f", layer, direction)
        return f if self.retention is None else self.retention[layer, direction]

    def get(self, quantity: str, layer: int = 0, direction: int = 0) -> np.ndarray:
        """(T, H) — or (T, P) for h — values of one quantity in one layer and direction."""
        q = check_quantity(quantity, self.quantities)
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer must be in [0, {self.num_layers - 1}] (0-based), got {layer}")
        if not 0 <= direction < self.num_directions:
            raise ValueError(f"direction must be in [0, {self.num_directions - 1}] (1 is the reverse "
                             f"direction of a bidirectional LSTM), got {direction}")
        return self.values[q][layer, direction]


def check_quantity(quantity: str, quantities: Sequence[str] = QUANTITIES) -> str:
    if quantity not in quantities:
        raise ValueError(f"quantity must be one of {', '.join(quantities)}; got {quantity!r}")
    return quantity


@torch.no_grad()
def collect_states(lstm: LSTM, x: Tensor, labels: Optional[Sequence[str]] = None, *,
                   series: Optional[Sequence[float]] = None, title: str = "") -> GateStates:
    """Run ``lstm`` over one sequence x and keep every gate and state (the values it computed).

    Args:
        lstm: an lk.LSTM (any variant, layers, directions, proj_size), lk.sLSTM or lk.mLSTM.
            Run in eval mode (dropout off, zoneout at its expectation) and put back in the mode
            it was in.
        x: (T, I) one sequence of input features (already embedded / scaled), T >= 1.
        labels: T strings naming the steps (default: "0", "1", ...).
        series: optional (T,) values drawn above the gates (a forecaster's series).
    Returns:
        GateStates with float32 arrays (L, D, T, ·).
    """
    if not isinstance(lstm, (LSTM, sLSTM, mLSTM)):
        raise TypeError(f"collect_states needs an lstmkit.LSTM, sLSTM or mLSTM, got {type(lstm).__name__}")
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be one sequence shaped (T, I) = (steps, {lstm.input_size}), got {shape}")
    T = x.shape[0]
    if T < 1:
        raise ValueError("x has no steps; give at least one")
    labels = [str(i) for i in range(T)] if labels is None else [str(s) for s in labels]
    if len(labels) != T:
        raise ValueError(f"labels must name each of the {T} steps, got {len(labels)}")
    if series is not None:
        series = np.asarray(series, dtype=np.float64).reshape(-1)
        if len(series) != T:
            raise ValueError(f"series must hold one value per step ({T}), got {len(series)}")
    was_training = lstm.training
    lstm.eval()
    try:
        p = next(lstm.parameters())
        gates = lstm(x.to(device=p.device, dtype=p.dtype), return_gates=True).gates  # each (L, D, T, ·)
    finally:
        lstm.train(was_training)
    meta = {"hidden_size": lstm.hidden_size, "proj_size": getattr(lstm, "proj_size", 0), "num_layers": lstm.num_layers,
            "bidirectional": bool(lstm.bidirectional),
            "variants": [n for n in ("peephole", "coupled", "layer_norm") if getattr(lstm, n, False)]}
    if isinstance(lstm, LSTM):
        values = {q: getattr(gates, q).detach().float().cpu().numpy() for q in QUANTITIES}
        return GateStates(values, labels, series, title, meta)
    meta.update(cell="slstm" if isinstance(lstm, sLSTM) else "mlstm", num_heads=lstm.num_heads,
                forget_gate=lstm.forget_gate)
    quantities, names = (SLSTM_QUANTITIES, XLSTM_NAMES) if isinstance(lstm, sLSTM) else (MLSTM_QUANTITIES, MLSTM_NAMES)
    per_unit = lstm.hidden_size // lstm.num_heads  # mLSTM's per-head values repeat over the head's units
    values = {}
    for q in quantities:
        v = getattr(gates, q).detach().double()  # (L, D, T, ·)
        if v.shape[-1] != lstm.hidden_size:
            v = v.repeat_interleave(per_unit, dim=-1)
        values[q] = v
    m = values["m"]
    m_prev = torch.cat([torch.full_like(m[:, :, :1], float("-inf")), m[:, :, :-1]], dim=2)  # the first step's memory is empty
    kept = (values["f"] * torch.exp(m - m_prev)).nan_to_num(0.0).clamp(0.0, 1.0)  # f = f'·exp(m_t − m_{t-1})
    return GateStates({q: v.float().cpu().numpy() for q, v in values.items()}, labels, series, title, meta,
                      quantities=quantities, names=dict(names), retention=kept.float().cpu().numpy())


def memory_span(f: np.ndarray, cap: Optional[float] = None) -> np.ndarray:
    """(H,) the median number of steps a unit's cell content takes to fall below half (see module doc).

    f: (T, H) forget-gate values in [0, 1]. cap [10·T]: reported where the content outlives the
    input. For a constant f the span is ceil(ln ½ / ln f) (f = 0.5: 1 step, f = 0.9: 7, f = 0.99: 69)
    while the input is long enough to see it.
    """
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 1:
        raise ValueError(f"f must be (T, H) forget-gate values with T >= 1, got shape {f.shape}")
    T, H = f.shape
    cap = float(10 * T if cap is None else cap)
    log_f = np.log(np.clip(f, np.finfo(np.float64).tiny, 1.0))  # (T, H) <= 0
    # drop[t] = -Σ_{s<=t} ln f_s is non-decreasing, so the first k with drop[t+k] - drop[t] > ln 2
    # is one binary search per start step. drop[-1] = 0 is the state before the first step.
    drop = np.concatenate([np.zeros((1, H)), -np.cumsum(log_f, axis=0)])  # (T+1, H)
    span = np.empty(H)
    starts = np.arange(T + 1)
    for u in range(H):
        # small slack: a constant f with k·ln f = ln ½ exactly must count as "half gone" at k
        end = np.searchsorted(drop[:, u], drop[:, u] + np.log(2.0) * (1 - 1e-9), side="left")  # (T+1,)
        k = np.where(end <= T, end - starts, np.inf)
        span[u] = np.median(k[:T])  # start steps 0..T-1: content written by steps -1..T-2
    return np.minimum(span, cap)
