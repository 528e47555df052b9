"""The explorer's views as static matplotlib figures, for reports (``pip install 'lstmkit[plot]'``).

    >>> from lstmkit.viz.figures import write_figures
    >>> write_figures(states, "figs", text=text, layer=0, unit=5, pattern='"[^"]*"')   # doctest: +SKIP
    ['figs/text_heatmap.png', 'figs/gate_strip.png', 'figs/trajectories.png', 'figs/memory_span.png', ...]

Each function draws one view and writes one PNG atomically (temporary file + rename):
- plot_text_heatmap: the text, each character on a cell coloured by one unit (a page's worth);
- plot_gate_strip: i, f, g, o, c, h of one unit at every step (with the series above, for forecasters);
- plot_trajectories: the cell state c of chosen units over the steps;
- plot_memory_spans: histogram of the units' memory spans, one panel per layer;
- plot_ranking: the units best correlated with a hypothesis signal (Pearson r).
Colours follow the page: gates i, f, o on 0…1 (white → blue); g, c, h diverging around 0.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from .._io import atomic_path
from .patterns import hypothesis_signal, rank_units
from .states import GateStates, memory_span

MISSING = "figures need matplotlib: pip install 'lstmkit[plot]'"


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(MISSING) from None
    return plt


def _save(fig, path: str) -> str:
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        _plt().close(fig)
    return path


def _norm(quantity: str, values: np.ndarray):
    """(cmap, vmin, vmax) for a quantity, as the page colours it."""
    if quantity in ("i", "f", "o"):
        return "Blues", 0.0, 1.0
    m = max(1e-6, float(np.abs(values).max(initial=0.0)))
    if quantity == "g":
        m = 1.0
    return "RdBu_r", -m, m


def plot_text_heatmap(states: GateStates, path: str, text: str, layer: int = 0, direction: int = 0,
                      quantity: str = "c", unit: int = 0, max_chars: int = 1200, columns: int = 80) -> str:
    """The first max_chars characters on a grid of ``columns``, wrapped at newlines, each cell
    coloured by the unit's value at that step."""
    plt = _plt()
    v = states.get(quantity, layer, direction)[:, unit]  # (T,)
    cells = []
    r = c = 0
    for t, ch in enumerate(text[:max_chars]):
        cells.append((r, c, t, ch))
        c += 1
        if ch == "\n" or c >= columns:
            r, c = r + 1, 0
    n_rows = max(1, r + (1 if c else 0))
    grid = np.full((n_rows, columns), np.nan)
    for r, c, t, _ in cells:
        grid[r, c] = v[t]
    cmap, lo, hi = _norm(quantity, v)
    fig, ax = plt.subplots(figsize=(columns * 0.13 + 1.2, n_rows * 0.22 + 1.0))
    im = ax.imshow(grid, cmap=cmap, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
    for r, c, t, ch in cells:
        ax.text(c, r, "↵" if ch == "\n" else ch, ha="center", va="center", fontsize=7, family="monospace")
    ax.set_xticks([])
    ax.set_yticks([])
    shown = min(len(text), max_chars)
    ax.set_title(f"layer {layer + 1}{' reverse' if direction else ''}, unit {unit}: {quantity} ({states.names[quantity]})"
                 + (f" — first {shown:,} of {len(text):,} characters" if shown < len(text) else ""), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
    fig.tight_layout()
    return _save(fig, path)


def plot_gate_strip(states: GateStates, path: str, layer: int = 0, direction: int = 0, unit: int = 0) -> str:
    """One row per quantity (i, f, g, o, c, h for the LSTM) of one unit over the steps; a
    forecaster's series above, same x axis."""
    plt = _plt()
    has_series = states.series is not None
    T, Q = states.steps, len(states.quantities)
    fig, axes = plt.subplots(Q + 1 if has_series else Q, 1, sharex=True,
                             figsize=(min(16, 4 + T * 0.06), (5.5 if has_series else 4) * max(1.0, Q / 6)),
                             gridspec_kw={"height_ratios": ([3] if has_series else []) + [1] * Q})
    axes = list(np.atleast_1d(axes))
    if has_series:
        ax = axes.pop(0)
        ax.plot(np.arange(T), states.series, color="#1d2330", lw=1.4)
        ax.set_ylabel("series", fontsize=8)
        ax.grid(alpha=0.3)
    for ax, q in zip(axes, states.quantities):
        v = states.get(q, layer, direction)[:, unit] if unit < states.units(q) else np.zeros(T)
        cmap, lo, hi = _norm(q, v)
        ax.imshow(v[None, :], cmap=cmap, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest",
                  extent=(-0.5, T - 0.5, 0, 1))
        ax.set_yticks([0.5])
        ax.set_yticklabels([q])
    ticks = np.linspace(0, T - 1, min(T, 8)).round().astype(int)
    axes[-1].set_xticks(ticks)
    axes[-1].set_xticklabels([states.labels[k] if has_series else str(k) for k in ticks], fontsize=7,
                             rotation=30 if has_series else 0)
    fig.suptitle(f"{states.title + ': ' if states.title else ''}layer {layer + 1}{' reverse' if direction else ''}, unit {unit}",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_trajectories(states: GateStates, path: str, units: Sequence[int], layer: int = 0, direction: int = 0,
                      shade: Optional[np.ndarray] = None) -> str:
    """c (mLSTM: h) over the steps for each of ``units`` (the first drawn in black); shade (T,) > 0 marks steps."""
    plt = _plt()
    c = states.get(states.memory, layer, direction)  # (T, H)
    T = states.steps
    fig, ax = plt.subplots(figsize=(10, 3.2))
    if shade is not None:
        ax.fill_between(np.arange(T), 0, 1, where=np.asarray(shade) > 0, color="#f3a712", alpha=0.2, lw=0,
                        transform=ax.get_xaxis_transform(), step="mid", label="pattern matches")
    for k, u in enumerate(units):
        ax.plot(np.arange(T), c[:, u], lw=1.6 if k == 0 else 0.9, color="#1d2330" if k == 0 else None, label=f"unit {u}")
    ax.axhline(0, color="#999", lw=0.6)
    ax.set(xlabel="step", ylabel=f"{states.memory} ({states.names[states.memory]})",
           title=f"{'cell-state' if states.memory == 'c' else 'hidden-state'} trajectories, layer {layer + 1}{' reverse' if direction else ''}")
    ax.legend(fontsize=7, ncol=min(7, len(units) + 1), loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_memory_spans(states: GateStates, path: str, direction: int = 0) -> str:
    """Histogram of memory_span per unit (log₂ bins), one panel per layer."""
    plt = _plt()
    L, T = states.num_layers, states.steps
    cap = 10 * T
    top = max(1, int(np.ceil(np.log2(max(2, T)))))
    edges = [2.0 ** k for k in range(top + 1)] + [cap]
    fig, axes = plt.subplots(1, L, figsize=(3.6 * L, 2.8), squeeze=False)
    for l, ax in enumerate(axes[0]):
        span = memory_span(states.kept(l, direction))
        counts = [int(((span >= lo) & (span < hi)).sum()) for lo, hi in zip(edges[:-1], edges[1:])] + [int((span >= cap).sum())]
        labels = [f"{int(e)}" for e in edges[:-1]] + ["≥T"]
        ax.bar(range(len(counts)), counts, color="#6d8fd8")
        ax.set_xticks(range(len(counts)))
        ax.set_xticklabels(labels, fontsize=7, rotation=45)
        ax.set(title=f"layer {l + 1}: median {np.median(span):.1f} steps", xlabel="memory span (steps, log₂ bins)",
               ylabel="units" if l == 0 else "")
    fig.tight_layout()
    return _save(fig, path)


def plot_ranking(r: np.ndarray, path: str, title: str, top: int = 20) -> str:
    """The ``top`` units by |r|, as horizontal bars (red: rises with the signal, blue: falls)."""
    plt = _plt()
    order = np.lexsort((np.arange(r.size), -np.abs(r)))[:top]
    fig, ax = plt.subplots(figsize=(5, 0.25 * len(order) + 1.2))
    ax.barh(range(len(order)), r[order], color=["#c83030" if v >= 0 else "#286ec8" for v in r[order]])
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([f"unit {u}" for u in order], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="#999", lw=0.6)
    ax.set(xlim=(-1, 1), xlabel="Pearson r", title=title)
    ax.title.set_fontsize(9)
    fig.tight_layout()
    return _save(fig, path)


def write_figures(states: GateStates, folder: str, text: Optional[str] = None, layer: int = 0, direction: int = 0,
                  unit: int = 0, quantity: str = "c", pattern: str = "") -> list[str]:
    """Every view as a PNG in ``folder``; returns the paths written."""
    _plt()  # a clear error before any work
    os.makedirs(folder, exist_ok=True)
    out = []
    if text is not None:
        out.append(plot_text_heatmap(states, os.path.join(folder, "text_heatmap.png"), text, layer, direction,
                                     quantity, unit))
    out.append(plot_gate_strip(states, os.path.join(folder, "gate_strip.png"), layer, direction, unit))
    units, shade = [unit], None
    if text is not None and pattern:
        signal, what = hypothesis_signal(text, "regex", pattern), f"pattern {pattern!r}"
        shade = signal
    elif states.series is not None:
        signal, what = states.series, "the series value"
    else:
        signal = None
    if signal is not None:
        order, r = rank_units(signal, states.get(states.memory, layer, direction))
        units += [int(u) for u in order if u != unit][:4]
        out.append(plot_ranking(r, os.path.join(folder, "ranking.png"),
                                f"units of layer {layer + 1} ({states.memory}) tracking {what}"))
    out.append(plot_trajectories(states, os.path.join(folder, "trajectories.png"), units, layer, direction, shade))
    out.append(plot_memory_spans(states, os.path.join(folder, "memory_span.png"), direction))
    return out
