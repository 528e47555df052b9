"""Text for the character language model: the embedded corpus or a user's UTF-8 file, the fixed
90/10 split, the streams training cuts it into, and the character n-gram baseline. The character
vocabulary is the apps' one Vocab (lstmkit.apps.vocab: ``Vocab.from_text``).
"""
from __future__ import annotations

import gzip
import math
import os
from collections import Counter
from importlib import resources
from typing import Sequence

from torch import Tensor

from ..errors import DataError

BUILTIN = "shakespeare"  # lstmkit/data/shakespeare.txt.gz (see lstmkit/data/README.md)
VALID_FRACTION = 0.1


TextDataError = DataError  # the name of the class before the apps shared one


def load_text(source: str = BUILTIN) -> str:
    """The embedded corpus ("shakespeare") or the UTF-8 text in file ``source``.

    Raises DataError (one line) for a missing, unreadable, binary (NUL bytes or not UTF-8)
    or empty file.
    """
    if source == BUILTIN:
        return gzip.decompress(resources.files("lstmkit").joinpath("data/shakespeare.txt.gz").read_bytes()).decode("utf-8")
    if not os.path.exists(source):
        raise DataError(f"{source}: no such file (give a UTF-8 text file, or {BUILTIN!r} for the embedded corpus)")
    if os.path.isdir(source):
        raise DataError(f"{source}: is a directory, expected a UTF-8 text file")
    try:
        with open(source, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{source}: cannot read it ({e.strerror})") from None
    if b"\x00" in raw:
        at = raw.index(b"\x00")
        raise DataError(f"{source}: looks binary (a NUL byte at offset {at}); "
                            "expected UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{source}: not UTF-8 text (undecodable byte at offset {e.start}); "
                            "convert it, e.g. iconv -t UTF-8") from None
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise DataError(f"{source}: is empty (no text to learn from)")
    return text


def split_text(text: str, valid_fraction: float = VALID_FRACTION) -> tuple[str, str]:
    """(train, valid): the first 90 % and the last 10 % of the text, a fixed contiguous split."""
    cut = int(round(len(text) * (1.0 - valid_fraction)))
    return text[:cut], text[cut:]


def ngram_nats(train: str, valid: str, context: int = 3, k: float = 0.01) -> float:
    """Cross-entropy (nats/char) on ``valid`` of a character n-gram fitted on ``train`` that predicts
    each character from the ``context`` characters before it.

    ``context`` is the model's order in the Markov-chain sense: context 3 is the "order-3" baseline
    of issue #7 and docs/explanation/data.md (1.81 there, 1.79 here; in n-gram counting it is a 4-gram),
    context 1 the bigram (2.53), context 0 the unigram. Smoothing is interpolated (Jelinek-Mercer
    style with Witten-Bell weights): P_n(c|h) = (count(h,c) + u(h)·P_{n-1}(c|h')) / (count(h) +
    u(h)), with u(h) the number of distinct characters seen after h, down to an add-k unigram over
    the alphabet of train ∪ valid. The first ``context`` valid characters use train's tail as
    context, so every valid character is scored.
    """
    if context < 0:
        raise ValueError(f"ngram context must be >= 0 characters, got {context}")
    alphabet = set(train) | set(valid)
    V = len(alphabet)
    counts: list[Counter] = []  # counts[n][(history, c)] for history length n
    hist: list[Counter] = []
    types: list[Counter] = []
    for n in range(context + 1):
        c = Counter(train[i - n : i + 1] for i in range(n, len(train)))
        counts.append(c)
        h = Counter()
        t = Counter()
        for gram, m in c.items():
            h[gram[:-1]] += m
            t[gram[:-1]] += 1
        hist.append(h)
        types.append(t)
    uni_total = len(train)

    def prob(history: str, ch: str) -> float:
        p = (counts[0][ch] + k) / (uni_total + k * V)
        for n in range(1, context + 1):
            h = history[len(history) - n :]
            if len(h) < n:
                break
            total = hist[n][h]
            if total == 0:
                continue
            u = types[n][h]
            p = (counts[n][h + ch] + u * p) / (total + u)
        return p

    full = train[-context:] + valid if context > 0 else valid
    off = len(full) - len(valid)
    nll = 0.0
    for i in range(len(valid)):
        j = i + off
        nll -= math.log(prob(full[max(0, j - context) : j], full[j]))
    return nll / len(valid)


def streams(ids: Tensor, n: int) -> Tensor:
    """(n, L) : ids cut into n equal contiguous streams (the tail that does not fit is dropped)."""
    L = len(ids) // n
    if L < 2:
        raise DataError(f"text of {len(ids)} characters is too short for {n} streams (need >= {2 * n})")
    return ids[: n * L].view(n, L)  # (n, L)


def batch_starts(length: int, window: int) -> Sequence[int]:
    """Start offsets of consecutive windows of ``window`` inputs in a stream of ``length`` ids."""
    return range(0, length - 1 - window + 1, window)
