"""An LSTM with weights set by hand so that one known unit tracks "inside double quotes".

A ground truth for interpretability tools: the explorer's pattern search must rank this unit
first for a regex marking quoted text, and its tests and benchmark use it. Nothing is trained.

The tracking unit u (layer 0) sees one-hot characters. On a quote character its forget gate
shuts (f ≈ 0), its input gate opens (i ≈ 1) and its input node reads its own previous hidden
state with a negative weight, g = tanh(b - K·h_{t-1}): the cell flips from ≈ -1 (outside) to
≈ +1 (inside) and back. On every other character f ≈ 1 and i ≈ 0, so the cell holds its value
for thousands of steps (f = σ(12): a half-life of ~10⁵ steps). The output gate stays open. The
first quote starts from c = 0, h = 0 and lands inside because of b > 0.

The other units get small random weights and never read unit u, so none of them can copy it.

    >>> lstm, encode = quote_tracker('ab "\\n', hidden_size=4, unit=1)
    >>> c = lstm(encode('a "bb" a'), return_gates=True).gates.c[0, 0, :, 1].detach()
    >>> [round(float(v)) for v in c]
    [0, 0, 1, 1, 1, -1, -1, -1]
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..lstm import LSTM

OPEN, SHUT = 12.0, -12.0  # gate pre-activations: σ(12) = 1 - 6e-6
FLIP_GAIN, FLIP_BIAS = 8.0, 3.0  # g = tanh(FLIP_BIAS - FLIP_GAIN·h): ≈ +1 from outside, ≈ -1 from inside


def quote_tracker(chars: str, hidden_size: int = 8, num_layers: int = 1, unit: int = 0, quote: str = '"',
                  seed: int = 0, noise: float = 0.5) -> tuple[LSTM, Callable[[str], Tensor]]:
    """(lstm, encode): an lk.LSTM over one-hot characters whose layer-0 unit ``unit`` tracks quotes.

    chars: the alphabet (must contain ``quote``); encode(text) → (T, len(chars)) one-hot float32.
    Other weights: N(0, noise²) / sqrt(fan-in), seeded.
    """
    if quote not in chars:
        raise ValueError(f"the alphabet must contain the quote character {quote!r}; got {chars!r}")
    if not 0 <= unit < hidden_size:
        raise ValueError(f"unit must be in [0, {hidden_size - 1}], got {unit}")
    index = {ch: k for k, ch in enumerate(chars)}
    V, H = len(chars), hidden_size
    lstm = LSTM(V, H, num_layers=num_layers, backend="reference")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            fan_in = p.shape[1] if p.dim() == 2 else H
            p.copy_(torch.randn(p.shape, generator=gen) * noise / fan_in ** 0.5)
        w_ih, w_hh, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0  # rows i, f, g, o
        lstm.bias_hh_l0.zero_()
        rows = {gate: k * H + unit for k, gate in enumerate("ifgo")}
        for r in rows.values():
            w_ih[r].zero_()
            w_hh[r].zero_()
        w_hh[:, unit] = 0.0  # no other unit reads the tracker
        q = index[quote]
        b[rows["i"]], w_ih[rows["i"], q] = SHUT, OPEN - SHUT  # i: shut, open on a quote
        b[rows["f"]], w_ih[rows["f"], q] = OPEN, SHUT - OPEN  # f: open (keep), shut on a quote
        b[rows["g"]], w_hh[rows["g"], unit] = FLIP_BIAS, -FLIP_GAIN
        b[rows["o"]] = OPEN

    def encode(text: str) -> Tensor:
        try:
            ids = torch.tensor([index[ch] for ch in text], dtype=torch.long)
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the alphabet {chars!r}") from None
        return torch.nn.functional.one_hot(ids, V).float()  # (T, V)

    return lstm, encode
