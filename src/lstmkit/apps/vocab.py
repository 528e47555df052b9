"""The one vocabulary of the apps: reversible tokenizers and the token ↔ id mapping.

The character language model and each side of a translation model use it:

- ``Vocab.of_chars(chars)`` / ``Vocab.from_text(text)``: characters only, no special tokens, id =
  position in the alphabet (what the text app saves as its ``vocab`` string). A character outside
  the alphabet is a DataError naming it: the model has never seen it.
- ``Vocab.build(texts, kind)``: the translation vocabularies, whose ids 0–3 are the specials
  ``<pad>``, ``<s>``, ``</s>``, ``<unk>``; an unknown token becomes ``<unk>``. No text can
  tokenize into a special (a literal "<unk>" in a sentence is "<", "unk", ">").

Three tokenizer granularities, all exactly reversible (``"".join(tokenize(s)) == s`` for text
whose whitespace is single spaces, which data cleaning guarantees):

- ``"char"``: every character is a token. Right for dates: a tiny alphabet, and every digit
  must be copied or computed one by one.
- ``"word"``: a word (letters/digits) or one punctuation character, each carrying the single
  space before it, if any (``"Open the file."`` → ``"Open", " the", " file", "."``). Word
  tokens keep sentences short (≈ 8 steps for a gettext message instead of ≈ 45 characters),
  which is what makes real BLEU reachable in minutes on a CPU; the price is an ``<unk>`` for
  rare words, which decoding replaces by the source word the model attended to (see decode).
- ``"subword"``: word tokens where the vocabulary holds them; any other word is cut, by
  greedy longest match, into pieces the vocabulary holds (its leading space becomes a " "
  token): ``" mtime"`` → ``" ", "mt", "ime"``. The pieces are the character n-grams (2–8)
  most frequent inside the rare words of the training text, plus every character, so almost
  nothing is ``<unk>`` and names, options and numbers can be copied piece by piece. Pieces
  concatenate back to the word, so this is as reversible as the word tokenizer.

    >>> v = Vocab.build(["Open the file.", "Close the file."], "word", min_count=1)
    >>> v.decode(v.token_ids("Open the file."))
    'Open the file.'
    >>> c = Vocab.from_text("to be or not")
    >>> c.decode(c.encode("be not")), c.chars
    ('be not', ' benort')
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor

from .errors import DataError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
KINDS = ("char", "word", "subword")
MAX_PIECE = 8  # longest subword piece, in characters

_WORD = re.compile(r" ?[^\W_]+| ?\S| ", re.UNICODE)  # the last branch keeps stray spaces: never lose text


def tokenize(text: str, kind: str) -> list[str]:
    """Tokens of ``text`` whose concatenation is ``text`` (see the module docstring)."""
    if kind == "char":
        return list(text)
    if kind in ("word", "subword"):  # subword: these are then cut by the vocabulary (Vocab.split)
        return _WORD.findall(text)
    raise ValueError(f"tokens must be one of {', '.join(KINDS)}, got {kind!r}")


@dataclass(frozen=True)
class Vocab:
    """Token strings by id and the tokenizer kind; ``specials`` (SPECIALS or none) lead the tokens."""

    tokens: tuple[str, ...]
    kind: str = "word"
    specials: tuple[str, ...] = SPECIALS

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "specials", tuple(self.specials))
        if self.specials not in (SPECIALS, ()):
            raise ValueError(f"a vocabulary's specials are {SPECIALS} or none, got {self.specials}")
        if self.tokens[: len(self.specials)] != self.specials:
            raise ValueError(f"a vocabulary starts with {self.specials}, got {self.tokens[: len(self.specials)]}")
        if self.kind not in KINDS:
            raise ValueError(f"vocabulary kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("a vocabulary lists each token once")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})
        object.__setattr__(self, "_pieces", {})  # subword: cache of word → pieces

    @classmethod
    def of_chars(cls, chars: str) -> "Vocab":
        """A character vocabulary without specials: id = position in ``chars``."""
        return cls(tuple(chars), "char", ())

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """The sorted distinct characters of ``text``, without specials."""
        return cls.of_chars("".join(sorted(set(text))))

    @property
    def chars(self) -> str:
        """The alphabet of a character vocabulary as one string (what a text run saves)."""
        return "".join(self.tokens)

    @classmethod
    def build(cls, texts: Iterable[str], kind: str, max_size: int = 0, min_count: int = 1,
              always: Iterable[str] = ()) -> "Vocab":
        """The ``max_size`` (0: all) most frequent tokens seen at least ``min_count`` times.

        Ties break by the token itself, so the same texts always give the same ids. ``always``
        adds tokens regardless of count (e.g. a generator's whole alphabet).
        """
        counts = Counter(t for s in texts for t in tokenize(s, kind))
        keep = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        if kind == "subword":
            return cls._build_subword(counts, keep, max_size, always)
        if max_size:
            keep = keep[: max(0, max_size - len(SPECIALS))]
        keep += sorted(set(always) - set(keep))
        return cls(SPECIALS + tuple(keep), kind)

    @classmethod
    def _build_subword(cls, counts: Counter, frequent: list[str], max_size: int, always: Iterable[str]) -> "Vocab":
        """Frequent words (3/4 of max_size), then every character, then the n-grams that fill the rest."""
        words = frequent[: (3 * (max_size - len(SPECIALS))) // 4] if max_size else frequent
        kept = set(words)
        chars = {c for t in counts for c in t} | {" "} | set(always)
        grams: Counter = Counter()
        for t, n in counts.items():
            if t in kept:
                continue
            w = t.lstrip(" ")
            for size in range(2, min(MAX_PIECE, len(w)) + 1):
                for i in range(len(w) - size + 1):
                    grams[w[i : i + size]] += n
        tokens = words + sorted(chars - kept)
        room = max_size - len(SPECIALS) - len(tokens) if max_size else len(grams)
        ranked = sorted((g for g in grams if g not in kept), key=lambda g: (-grams[g] * (len(g) - 1), g))
        tokens += ranked[: max(0, room)]
        return cls(SPECIALS + tuple(tokens), "subword")

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens``; an unknown one is UNK, or a DataError naming it without specials."""
        index = self._index  # type: ignore[attr-defined]
        if self.specials:
            return [index.get(t, UNK) for t in tokens]
        try:
            return [index[t] for t in tokens]
        except KeyError as e:
            what = "character" if self.kind == "char" else "token"
            raise DataError(f"{what} {e.args[0]!r} is not in the model's vocabulary of {len(self)} {what}s") from None

    def split(self, text: str) -> list[str]:
        """The tokens the model sees for ``text`` (their concatenation is ``text``)."""
        tokens = tokenize(text, self.kind)
        if self.kind != "subword":
            return tokens
        index = self._index  # type: ignore[attr-defined]
        return [p for t in tokens for p in ((t,) if t in index else self._cut(t))]

    def _cut(self, word: str) -> tuple[str, ...]:
        """Greedy longest-match pieces of a word the vocabulary does not hold."""
        cache = self._pieces  # type: ignore[attr-defined]
        if word not in cache:
            index, pieces, w = self._index, [], word  # type: ignore[attr-defined]
            if w.startswith(" "):
                pieces.append(" ")
                w = w[1:]
            i = 0
            while i < len(w):
                size = next((n for n in range(min(MAX_PIECE, len(w) - i), 1, -1) if w[i : i + n] in index), 1)
                pieces.append(w[i : i + size])
                i += size
            cache[word] = tuple(pieces)
        return cache[word]

    def token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` (without <s> / </s>) as ints; unknown tokens as in ``ids``."""
        return self.ids(self.split(text))

    def encode(self, text: str) -> Tensor:
        """token_ids(text) as a (len,) int64 tensor: what an embedding reads."""
        return torch.tensor(self.token_ids(text), dtype=torch.long)

    def unknown(self, text: str) -> list[str]:
        """The tokens of ``text`` this vocabulary does not hold, in order of appearance, once each."""
        index = self._index  # type: ignore[attr-defined]
        return list(dict.fromkeys(t for t in self.split(text) if t not in index))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; with specials, stopping at </s> and skipping <pad> and <s> (UNK prints as "<unk>")."""
        if not self.specials:
            return "".join(self.tokens[int(i)] for i in ids)
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.tokens[i])
        return "".join(out)


__all__ = ["BOS", "EOS", "KINDS", "PAD", "SPECIALS", "UNK", "Vocab", "tokenize"]
