"""The embedded Reber grammar (Hochreiter & Schmidhuber 1997, Section 5.1, Experiment 1).

The Reber grammar (Reber 1967; as used by Cleeremans et al. 1989 and Fahlman 1991) is the
automaton below; every branch is taken with probability 0.5::

    state 0 --T--> 1   state 0 --P--> 2        (after the leading B)
    state 1 --S--> 1   state 1 --X--> 3
    state 2 --T--> 2   state 2 --V--> 4
    state 3 --X--> 2   state 3 --S--> 5
    state 4 --P--> 3   state 4 --V--> 5
    state 5 --E--> end

An embedded Reber string is B, then T or P, then a whole Reber string (B … E), then the same
T or P again, then E. Predicting that second T/P means remembering the first across the
inner string — the long lag; an Elman net never learns it (Table 1: 0 % of trials).

Task (Section 5.1): predict the next symbol at every step, local (one-hot) input and output
over {B, T, P, S, X, V, E}. 256 training strings; 256 test strings, none of them in the
training set. "A trial is considered successful if all string symbols of all sequences in
both test set and training set are predicted correctly — that is, if the output unit(s)
corresponding to the possible next symbol(s) is (are) always the most active ones."
We apply that literally: at every step the top-k outputs (k = number of legal next symbols)
are exactly the legal next symbols.
Table 1: LSTM solves 97–100 % of trials depending on its architecture (mean on the order of
10^4 training sequences); RTRL and Elman nets 0 %, RCC 50 %.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor

from .base import IGNORE, Batch, LagTask, PaperRow, TaskDefaults, batch_generator, one_hot

SYMBOLS = "BTPSXVE"
INDEX = {s: k for k, s in enumerate(SYMBOLS)}
# state -> ((symbol, next state), (symbol, next state)); state 5 only emits E
GRAPH = {0: (("T", 1), ("P", 2)), 1: (("S", 1), ("X", 3)), 2: (("T", 2), ("V", 4)),
         3: (("X", 2), ("S", 5)), 4: (("P", 3), ("V", 5))}
TRAIN_SIZE = TEST_SIZE = 256


def reber_string(generator: torch.Generator) -> str:
    """One string of the (plain) Reber grammar, B … E."""
    out, state = ["B"], 0
    while state != 5:
        symbol, state = GRAPH[state][int(torch.randint(0, 2, (1,), generator=generator))]
        out.append(symbol)
    return "".join(out) + "E"


def embedded_reber_string(generator: torch.Generator) -> str:
    """One embedded Reber string: B, T|P, a Reber string, the same T|P, E."""
    outer = "TP"[int(torch.randint(0, 2, (1,), generator=generator))]
    return "B" + outer + reber_string(generator) + outer + "E"


def legal_next(string: str) -> list[str]:
    """The legal successors of each symbol of string but the last: len(string) - 1 entries.

    Walks the embedded automaton; raises ValueError if string leaves the grammar.
    """
    def bad(why: str) -> ValueError:
        return ValueError(f"not an embedded Reber string: {string!r} ({why})")

    if len(string) < 9 or string[:1] != "B" or string[1:2] not in ("T", "P") or string[2] != "B":
        raise bad("must start with B, T or P, B")
    out, state = ["TP", "B", "TP"], 0  # successors of B, of the outer letter, of the inner B
    k = 3
    while state != 5:
        if k >= len(string):
            raise bad("ends inside the inner string")
        nxt = dict(GRAPH[state]).get(string[k])
        if nxt is None:
            raise bad(f"{string[k]!r} cannot follow at position {k}")
        state = nxt
        out.append("E" if state == 5 else "".join(s for s, _ in GRAPH[state]))
        k += 1
    if string[k:] != "E" + string[1] + "E":
        raise bad("the inner string must end with E, then the outer letter again, then E")
    out += [string[1], "E"]  # after the inner E: the outer letter; after it: E
    return out


def is_embedded_reber(string: str) -> bool:
    """Whether string belongs to the embedded Reber grammar (walks the automaton)."""
    try:
        legal_next(string)
        return True
    except (ValueError, KeyError):
        return False


class EmbeddedReber(LagTask):
    """Next-symbol prediction on embedded Reber strings, fixed 256-string training set."""

    name = "reber"
    input_size = output_size = len(SYMBOLS)
    readout, kind = "every", "classification"
    n_test = TEST_SIZE
    reference = PaperRow(
        "Hochreiter & Schmidhuber 1997, Table 1", "97-100 % of trials solved (Elman net 0 %)",
        success_rate=0.97, rnn="Elman 0 %, RTRL 0 %",
    )
    # A small net (the paper's had 4-6 cells) and weight decay: with 256 training strings a
    # larger or unregularized net memorizes which branch each training prefix took, and then
    # ranks an illegal symbol above the untaken legal one on new strings.
    defaults = TaskDefaults(hidden_size=16, lr=3e-3, batch_size=32, weight_decay=0.01, input_bias=-2.0,
                            max_steps=4000, eval_every=10, time_budget=240.0)

    # --- the paper's fixed sets ---------------------------------------------------------
    def strings(self, seed: int) -> tuple[list[str], list[str]]:
        """The 256 training strings and 256 test strings (none of which is a training string)."""
        g = torch.Generator().manual_seed(seed)
        train = [embedded_reber_string(g) for _ in range(TRAIN_SIZE)]
        seen, test = set(train), []
        while len(test) < TEST_SIZE:
            s = embedded_reber_string(g)
            if s not in seen:
                test.append(s)
        return train, test

    @staticmethod
    def encode(strings: list[str]) -> Batch:
        """Inputs are every symbol but the last; targets the symbol after each."""
        lengths = torch.tensor([len(s) - 1 for s in strings])
        Tmax = int(lengths.max())
        symbols = torch.full((len(strings), Tmax + 1), IGNORE, dtype=torch.long)
        legal = torch.zeros(len(strings), Tmax, len(SYMBOLS), dtype=torch.bool)
        for b, s in enumerate(strings):
            symbols[b, : len(s)] = torch.tensor([INDEX[c] for c in s])
            for t, options in enumerate(legal_next(s)):
                legal[b, t, [INDEX[c] for c in options]] = True
        x = one_hot(symbols[:, :-1], len(SYMBOLS), lengths)
        return Batch(x, lengths, symbols[:, 1:].clone(), legal)

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        return self.encode([embedded_reber_string(generator) for _ in range(n)])

    def train_batch(self, k: int, batch_size: int, seed: int) -> Batch:
        """Random draws (with replacement) from this trial's fixed training set, as in the paper."""
        train = self._train_set(seed)
        pick = torch.randint(0, train.size, (batch_size,), generator=batch_generator(seed, k))
        lengths = train.lengths[pick]
        T = int(lengths.max())  # trim the padding to this batch's longest string
        return Batch(train.x[pick, :T], lengths, train.target[pick, :T], train.legal[pick, :T])

    def _train_set(self, seed: int) -> Batch:
        """The encoded training strings of trial seed (encoded once: encoding walks the grammar)."""
        cache = self.__dict__.setdefault("_cache", {})
        if seed not in cache:
            cache[seed] = self.encode(self.strings(seed)[0])
        return cache[seed]

    def test_set(self, seed: int) -> Batch:
        """The paper tests on both sets: the trial's 256 training strings plus 256 new ones."""
        train, test = self.strings(seed)
        return self.encode(train + test)

    # --- criterion -----------------------------------------------------------------------
    def wrong(self, y: Tensor, batch: Batch) -> Tensor:
        """A string is wrong if at any step the top-k outputs are not exactly the k legal symbols."""
        legal = batch.legal  # (B, T, O)
        k = legal.sum(-1, keepdim=True)  # (B, T, 1), 1 or 2 (0 on padding)
        rank = y.argsort(-1, descending=True).argsort(-1)  # (B, T, O) rank of each output
        top = rank < k
        step_ok = (top == legal).all(-1)  # (B, T)
        steps = torch.arange(y.shape[1]).unsqueeze(0)
        step_ok = step_ok | (steps >= batch.lengths.unsqueeze(1))
        return ~step_ok.all(-1)

    def solved(self, metrics) -> bool:
        return metrics["wrong"] == 0

    def describe(self) -> str:
        return "embedded Reber"


# An independent oracle for tests: the Reber language as a regular expression.
_C = r"(?:XT*VP)*(?:S|XT*VV)"
REBER_RE = re.compile(rf"B(?:TS*X{_C}|PT*V(?:V|P{_C}))E")
EMBEDDED_RE = re.compile(rf"B(?:T{REBER_RE.pattern}T|P{REBER_RE.pattern}P)E")
