"""Translation scores: exact match, and corpus BLEU through sacrebleu (the optional extra ``translate``).

BLEU is sacrebleu's default corpus BLEU (13a tokenization, case-sensitive), so figures are
comparable with anything else reported by sacrebleu. The copy-the-source baseline scores the
untranslated source as the output: in software messages many tokens (option names, commands,
numbers, product names) stay as they are, so this baseline is far from zero and a model must
clear it to show it translates.
"""
from __future__ import annotations

from typing import Sequence

INSTALL_HINT = "pip install 'lstmkit[translate]' (or pip install sacrebleu)"


def have_sacrebleu() -> bool:
    try:
        import sacrebleu  # noqa: F401
    except ImportError:
        return False
    return True


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of hypotheses equal to their reference, character for character."""
    _check(hypotheses, references)
    return sum(h == r for h, r in zip(hypotheses, references)) / len(references) if references else 0.0


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (0–100) of hypotheses against one reference each."""
    _check(hypotheses, references)
    try:
        import sacrebleu
    except ImportError:
        raise ImportError(f"BLEU needs sacrebleu: {INSTALL_HINT}") from None
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"expected one hypothesis per reference, got {len(hypotheses)} and {len(references)}")


__all__ = ["INSTALL_HINT", "corpus_bleu", "exact_match", "have_sacrebleu"]
