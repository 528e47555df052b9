"""Hypothesis selection (LSTMVis, Strobelt et al. 2018): which units track a pattern of the input?

The user states a hypothesis as a per-step signal: a regular expression over the text (1 on
every character inside a match, 0 elsewhere — e.g. ``"[^"\\n]*"`` marks text inside double
quotes), or a built-in continuous one (the position of a character in its line). Each unit is
scored by the Pearson correlation r between the signal s (T,) and its activation a (T,):

    r = Σ (s_t - s̄)(a_t - ā) / sqrt(Σ (s_t - s̄)² · Σ (a_t - ā)²)

and units are ranked by |r|. Why r: with a 0/1 mask it is the point-biserial correlation, the
difference of the unit's mean inside and outside the matches in units of its spread, so it
does not favour units with a large range (c is unbounded) and it needs no threshold; its sign
says whether the unit rises or falls inside; and it extends unchanged to continuous signals.
A unit that does not vary, or a signal that does not vary, scores 0.

The explorer page computes the same score in JavaScript as the user types (``explorer.js``,
``pearsonScores``); regular expressions there use JavaScript's syntax, here Python's ``re``:
the common subset (classes, groups, quantifiers, alternation, lookaround, ``^``/``$`` per line)
means the same in both. Both use multiline mode, so ``^`` and ``$`` anchor at line starts/ends.

    >>> import numpy as np
    >>> pattern_mask('say "hi" now', '"[^"]*"').astype(int).tolist()
    [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
"""
from __future__ import annotations

import re
from typing import Sequence, Union

import numpy as np

SIGNALS = ("regex", "line_position")


class PatternError(ValueError):
    """The hypothesis cannot be scored: a bad regular expression, or a signal that never varies."""


def compile_pattern(pattern: str) -> "re.Pattern[str]":
    """The pattern compiled in multiline mode; PatternError (one line) if it is not a regex."""
    if not isinstance(pattern, str) or pattern == "":
        raise PatternError(f"the pattern must be a non-empty regular expression, got {pattern!r}")
    try:
        return re.compile(pattern, re.M)
    except re.error as e:
        raise PatternError(f"pattern {pattern!r} is not a valid regular expression: {e}") from None


def pattern_mask(text: Union[str, Sequence[str]], pattern: str) -> np.ndarray:
    """(T,) float64: 1.0 on each character inside a match of ``pattern``, 0.0 elsewhere.

    text: the input as one string (or its T per-step characters). Matches are found left to
    right without overlap (re.finditer); zero-length matches mark nothing.
    """
    text = text if isinstance(text, str) else "".join(text)
    rx = compile_pattern(pattern)
    mask = np.zeros(len(text), dtype=np.float64)
    for m in rx.finditer(text):
        mask[m.start():m.end()] = 1.0
    return mask


def line_position(text: Union[str, Sequence[str]]) -> np.ndarray:
    """(T,) float64: each character's 0-based column in its line (a newline ends its line)."""
    text = text if isinstance(text, str) else "".join(text)
    out = np.zeros(len(text), dtype=np.float64)
    col = 0
    for t, ch in enumerate(text):
        out[t] = col
        col = 0 if ch == "\n" else col + 1
    return out


def hypothesis_signal(text: Union[str, Sequence[str]], kind: str = "regex", pattern: str = "") -> np.ndarray:
    """(T,) the signal of a hypothesis: kind "regex" (needs ``pattern``) or "line_position"."""
    if kind == "regex":
        return pattern_mask(text, pattern)
    if kind == "line_position":
        return line_position(text)
    raise PatternError(f"signal kind must be one of {', '.join(SIGNALS)}; got {kind!r}")


def pearson_scores(signal: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """(H,) Pearson r between signal (T,) and each column of activations (T, H); 0 where either is flat."""
    s = np.asarray(signal, dtype=np.float64).reshape(-1)
    a = np.asarray(activations, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != s.shape[0]:
        raise ValueError(f"activations must be (T, H) with T = {s.shape[0]} (the signal's length), got {a.shape}")
    sc = s - s.mean()
    ac = a - a.mean(axis=0)
    num = sc @ ac  # (H,)
    den = np.sqrt((sc @ sc) * (ac * ac).sum(axis=0))  # (H,)
    # a flat unit (or signal) has no direction to agree with: score 0, not NaN
    return np.where(den > 1e-12 * max(1.0, float(np.abs(a).max(initial=0.0))), num / np.where(den > 0, den, 1.0), 0.0)


def rank_units(signal: np.ndarray, activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, r): unit indices by decreasing |r| (ties: lower index first), and r (H,) per unit.

    Raises PatternError when the signal does not vary (a regex that matches no character, or
    every character): no unit can be told to track it.
    """
    s = np.asarray(signal, dtype=np.float64).reshape(-1)
    if s.size == 0 or np.ptp(s) == 0:
        what = "no character" if s.size == 0 or s.max() == 0 else "every character"
        raise PatternError(f"the pattern matches {what} of the input, so it singles nothing out; "
                           "choose one that matches some characters and not others")
    r = pearson_scores(s, activations)
    order = np.lexsort((np.arange(r.size), -np.abs(r)))
    return order, r
