"""Pictures of what an LSTM computes: the gate explorer page and its static figures.

- states: collect_states (i, f, g, o, c, h of every layer, direction and step), memory_span
- patterns: hypothesis selection — units ranked by how strongly they track a pattern
- explorer: write_explorer, one self-contained offline HTML page (explorer.html + explorer.js)
- figures: the same views as matplotlib PNGs (``pip install 'lstmkit[plot]'``)
- constructed: an LSTM with a hand-set unit that tracks quoted text (ground truth for tests)

This layer takes an lk.LSTM, an input (T, I) and per-step labels; pulling them out of an app's
model is the app's or the command line's job.
"""
from .patterns import PatternError, hypothesis_signal, line_position, pattern_mask, pearson_scores, rank_units
from .states import QUANTITIES, GateStates, collect_states, memory_span

__all__ = ["GateStates", "PatternError", "QUANTITIES", "collect_states", "hypothesis_signal", "line_position",
           "memory_span", "pattern_mask", "pearson_scores", "rank_units"]
