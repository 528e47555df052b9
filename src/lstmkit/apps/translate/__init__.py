"""Translation: an encoder–decoder LSTM with attention (registers ``lstmkit train translate``).

Pieces: data (gettext EN→FR catalogs or a TSV file, cleaned, hash-split 90/5/5), dates (seeded
date-normalization pairs), model (Seq2Seq: lk.LSTM encoder, Luong / Bahdanau attention with a
padding mask, lk.LSTM decoder), task (the Trainer task "translate"), decode (the use: greedy, beam
search with a length penalty, <unk> replacement), metrics (exact match, sacrebleu BLEU). The
tokenizers and vocabularies (char / word / subword, <pad> <s> </s> <unk>) are lstmkit.apps.vocab's.
"""
from ..errors import DataError
from .data import TranslateDataError, gettext_pairs, read_tsv, split_of, split_pairs
from .decode import Hypothesis, beam_search, beam_search_batch, greedy, translate
from .metrics import corpus_bleu, exact_match
from .model import Attention, Memory, Seq2Seq
from .task import TranslateConfig, TranslateTask
from ..vocab import Vocab, tokenize

__all__ = ["Attention", "DataError", "Hypothesis", "Memory", "Seq2Seq", "TranslateConfig", "TranslateDataError", "TranslateTask",
           "Vocab", "beam_search", "beam_search_batch", "corpus_bleu", "exact_match", "gettext_pairs", "greedy", "read_tsv", "split_of",
           "split_pairs", "tokenize", "translate"]
