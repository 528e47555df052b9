"""The gate explorer: one self-contained HTML page of everything an LSTM computed over one input.

    >>> from lstmkit.viz import collect_states
    >>> from lstmkit.viz.explorer import write_explorer
    >>> states = collect_states(lstm, x, labels=list(text))          # doctest: +SKIP
    >>> write_explorer(states, "gates.html", text=text)               # doctest: +SKIP

The page (``explorer.html`` + ``explorer.js``, shipped with the package) embeds its data and
needs no network at view time: no CDN, no fonts, no external URL. It shows

- the input — the text with each character coloured by the chosen layer / direction / quantity
  (i, f, g, o, c, h) / unit, or a forecaster's series with the gates aligned below it on the
  same time axis — and a strip of all six quantities of that unit, step by step;
- the unit browser: units ranked by |Pearson r| between their activation and a hypothesis the
  user types (a regular expression over the text, the position in the line, or the series
  value), recomputed live in the browser as in LSTMVis's hypothesis selection (patterns.py);
- cell-state trajectories of the chosen unit and the best-ranked ones;
- each unit's forget-gate memory span (states.memory_span) and a histogram of them per layer.

An lk.sLSTM's page shows its i, f, z, o, c, n, m, h; an lk.mLSTM's its i, f, o, n, m, h (the
per-head ones on every unit of the head) with h's trajectories in place of the cell's
(states.collect_states says what each is).

Data format (embedded as JSON in ``<script type="application/json" id="lk-data">``): every
(quantity, layer, direction) array (T, U) is quantized linearly to 8 (or 16) bits between its
own min and max and base64-encoded row-major — a step of (max - min) / 255, under 0.004 for the
gates. A 5,000-character text through 3 layers of 64 (128) units makes a 7.7 (15.4) MB page
(benchmarks/explorer_page.py). Memory spans are computed here, in float, before quantization
(a span is sensitive to f near 1).
"""
from __future__ import annotations

import base64
import html
import json
from importlib import resources
from typing import Any, Optional

import numpy as np

from .._io import atomic_write_text
from .states import GateStates, memory_span

FORMAT = 1
DATA_MARK = "/*LK_DATA*/"
SCRIPT_MARK = "/*LK_SCRIPT*/"
TITLE_MARK = "<!--LK_TITLE-->"


def quantize(a: np.ndarray, bits: int = 8) -> dict[str, Any]:
    """{"lo", "hi", "bits", "data"}: a (T, U) mapped linearly onto 0 … 2^bits - 1, base64 (row-major, little-endian)."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    top = (1 << bits) - 1
    scale = top / (hi - lo) if hi > lo else 0.0
    q = np.rint((a - lo) * scale).astype("<u2" if bits == 16 else np.uint8)
    return {"lo": lo, "hi": hi, "bits": bits, "data": base64.b64encode(np.ascontiguousarray(q).tobytes()).decode("ascii")}


def dequantize(entry: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """The float array an entry of quantize() stands for (what the page's JavaScript decodes)."""
    raw = base64.b64decode(entry["data"])
    q = np.frombuffer(raw, dtype="<u2" if entry["bits"] == 16 else np.uint8).reshape(shape).astype(np.float64)
    top = (1 << entry["bits"]) - 1
    return entry["lo"] + q * (entry["hi"] - entry["lo"]) / top


def build_payload(states: GateStates, *, text: Optional[str] = None, pattern: str = "", layer: int = 0,
                  quantity: str = "c", unit: int = 0, bits: int = 8, live: bool = False) -> dict[str, Any]:
    """The JSON object the page reads: model shape, input, quantized arrays, spans, defaults.

    text: the input text for a character model (one character per step); None for a series
        (then ``states.series`` is drawn with ``states.labels`` on the time axis).
    pattern, layer (0-based), quantity, unit: what the page shows first.
    live: the page was served by ``lstmkit inspect --serve`` and may ask it for new text.
    """
    T, L, D = states.steps, states.num_layers, states.num_directions
    if text is not None and len(text) != T:
        raise ValueError(f"text has {len(text)} characters but the states have {T} steps")
    if text is None and states.series is None:
        raise ValueError("give the text of a character model, or states collected with series=")
    if not 0 <= layer < L:
        raise ValueError(f"layer must be in [0, {L - 1}] (0-based), got {layer}")
    quantities = states.quantities
    memory = states.memory  # mLSTM's memory is a matrix per head: its trajectory is h's
    quantity = memory if quantity == "c" else quantity
    if quantity not in quantities:
        raise ValueError(f"quantity must be one of {', '.join(quantities)}; got {quantity!r}")
    if not 0 <= unit < states.units(quantity):
        raise ValueError(f"unit must be in [0, {states.units(quantity) - 1}], got {unit}")
    arrays = {q: [[quantize(states.get(q, l, d), bits) for d in range(D)] for l in range(L)] for q in quantities}
    spans = [[_round(memory_span(states.kept(l, d)), 2) for d in range(D)] for l in range(L)]
    fbar = [[_round(states.kept(l, d).mean(axis=0), 4) for d in range(D)] for l in range(L)]
    payload: dict[str, Any] = {
        "format": FORMAT,
        "kind": "text" if text is not None else "series",
        "title": states.title,
        "model": {"layers": L, "directions": D, "hidden": states.hidden_size, "proj": states.units("h"),
                  **{k: v for k, v in states.meta.items() if k in ("variants", "cell", "num_heads", "forget_gate")}},
        "steps": T,
        "quantities": list(quantities),
        "names": states.names,
        "trajectory": memory,
        "arrays": arrays,
        "span": spans,
        "span_cap": 10 * T,
        "fbar": fbar,
        "defaults": {"layer": layer, "direction": 0, "quantity": quantity, "unit": unit, "pattern": pattern,
                     "rank_quantity": memory},
        "live": bool(live),
    }
    if text is not None:
        payload["text"] = text
    else:
        payload["labels"] = list(states.labels)
        payload["series"] = _round(np.asarray(states.series, dtype=np.float64), 6)
    return payload


def render_page(payload: dict[str, Any]) -> str:
    """The HTML page for a payload: template + script + data, one string."""
    pkg = resources.files("lstmkit.viz")
    template = pkg.joinpath("explorer.html").read_text(encoding="utf-8")
    script = pkg.joinpath("explorer.js").read_text(encoding="utf-8")
    # "<" only occurs inside JSON strings, where \u003c is the same character: no "</script>" or
    # "<!--" in the data can end or confuse the script element.
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    if "</script" in script.lower():
        raise RuntimeError("explorer.js must not contain '</script'")
    title = html.escape(payload.get("title") or "LSTM gate explorer")
    return template.replace(TITLE_MARK, title).replace(SCRIPT_MARK, script).replace(DATA_MARK, data)


def write_explorer(states: GateStates, path: str, **options: Any) -> str:
    """Write the explorer page for ``states`` to ``path`` atomically; returns path.

    options: those of build_payload (text, pattern, layer, quantity, unit, bits, live).
    """
    page = render_page(build_payload(states, **options))
    atomic_write_text(path, page)
    return path


def _round(a: np.ndarray, digits: int) -> list:
    """A list of floats rounded for compact JSON; inf (a span that outlives the input) never occurs
    here because spans are capped."""
    return [round(float(v), digits) for v in np.asarray(a).reshape(-1)]
