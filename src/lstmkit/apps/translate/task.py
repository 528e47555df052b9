"""The "translate" task of ``lstmkit train``: an encoder–decoder LSTM with attention, teacher forcing.

    task = "translate"
    data = "gettext"            # "dates" | "gettext" (installed EN→FR catalogs) | a TSV of source<TAB>target
    bidirectional = true
    attention = "general"       # general | dot | additive
    [train]
    steps = 3200

Data: ``dates`` generates date-normalization pairs on the fly (character tokens; held-out dates
for validation and a fixed test set, see lstmkit.apps.translate.dates); ``gettext`` reads the
English→French pairs of the installed catalogs (subword tokens, see lstmkit.apps.translate.data
and .vocab); a TSV file is split 90/5/5 the same way. Both vocabularies come from the training
split only and are written into the run's config (``src_vocab``, ``tgt_vocab``), so
``lstmkit translate RUN`` needs no data.

Evaluation during training: the validation loss (nats per target token, no label smoothing),
then ``eval_size`` validation sentences decoded greedily, scored by exact match (dates) or by
sacrebleu BLEU beside the copy-the-source baseline (everything else). ``TranslateTask.score``
(``lstmkit translate RUN --test``) scores the held-out test split, greedy or with beam search.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...train.config import ConfigError
from ...train.registry import register_task
from ...train.task import Task
from ..errors import DataError
from ..lstm_config import LSTMConfig
from . import dates as D
from .data import LOCALE_DIR, MAX_CHARS, SPLITS, Pair, gettext_pairs, read_tsv, split_pairs
from .decode import pad, translate
from .metrics import INSTALL_HINT, corpus_bleu, exact_match, have_sacrebleu
from .model import ATTENTIONS, Seq2Seq
from ..vocab import BOS, EOS, KINDS, PAD, Vocab

BUILTIN = ("dates", "gettext")
ISO_ALPHABET = "0123456789-"
BUCKET = 32  # batches per length-sorted bucket: little padding, yet batches still mixed each epoch


@dataclass
class TranslateConfig:
    """Options of the "translate" task (see the module docstring)."""

    data: str = "dates"  # "dates" | "gettext" | path to a UTF-8 TSV file of source<TAB>target lines
    language: str = "fr"  # gettext: catalogs in <locale_dir>/<language>/LC_MESSAGES
    locale_dir: str = LOCALE_DIR
    tokens: str = "auto"  # auto (char for dates, subword otherwise) | char | word | subword
    max_vocab: int = 8000  # per side (word / subword); rarer words become <unk> (word) or pieces (subword)
    min_count: int = 2  # a word token enters the vocabulary after this many training occurrences
    max_len: int = 50  # training pairs with more tokens than this on either side are skipped
    max_chars: int = MAX_CHARS  # gettext / TSV pairs longer than this (either side) are dropped
    embedding_size: int = 128
    hidden_size: int = 256
    num_layers: int = 1
    bidirectional: bool = True
    attention: str = "general"  # general | dot | additive
    input_feed: bool = False  # Luong's input feeding (slower: the decoder loops over steps)
    dropout: float = 0.2
    label_smoothing: float = 0.1
    eval_size: int = 500  # validation sentences decoded at each evaluation (0: loss only)
    test_size: int = 2000  # dates: size of the fixed test set
    beam: int = 5  # default beam of `lstmkit translate`
    length_penalty: float = 0.6  # alpha of the beam's length penalty ((5 + n) / 6) ** alpha
    data_seed: int = 0  # training batch order (gettext / TSV) or training dates
    backend: str = "auto"
    lstm: LSTMConfig = field(default_factory=LSTMConfig)  # [lstm]: lk.LSTM's variants, encoder and decoder
    src_vocab: tuple[str, ...] = ()  # filled in from the training split; kept so translation needs no data
    tgt_vocab: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_len", "embedding_size", "hidden_size", "num_layers", "min_count", "test_size", "beam",
                     "max_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"translate: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_size", "max_vocab"):
            if getattr(self, name) < 0:
                raise ValueError(f"translate: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("dropout", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"translate: {name} must be in [0, 1), got {getattr(self, name)}")
        self.lstm.check_hidden_size(self.hidden_size, "translate")
        if self.length_penalty < 0:
            raise ValueError(f"translate: length_penalty must be >= 0, got {self.length_penalty}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"translate: attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if self.tokens not in ("auto",) + KINDS:
            raise ValueError(f"translate: tokens must be auto, {', '.join(KINDS)}, got {self.tokens!r}")
        if self.attention == "dot" and self.bidirectional:
            raise ValueError("translate: attention 'dot' needs bidirectional = false (the encoder outputs 2·hidden_size"
                             " values per step, the decoder hidden_size); use 'general'")
        if self.data not in BUILTIN and not self.data.strip():
            raise ValueError("translate: data must be 'dates', 'gettext' or a TSV file path, got ''")
        if self.data not in BUILTIN and os.path.isfile(self.data):
            self.data = os.path.abspath(self.data)  # resumes and `lstmkit translate --test` from any folder
        if self.data == "dates" and self.tokens not in ("auto", "char"):
            raise ValueError(f"translate: data 'dates' is character-level (tokens = auto or char), got {self.tokens!r}")
        if self.tokens == "auto":
            self.tokens = "char" if self.data == "dates" else "subword"


class TranslateTask(Task):
    """Reads the data lazily: a run rebuilt for translation needs only the saved vocabularies."""

    def __init__(self, cfg: TranslateConfig) -> None:
        self.cfg = cfg
        self._splits: Optional[dict[str, list[Pair]]] = None
        self._train_ids: Optional[list[tuple[list[int], list[int]]]] = None
        self._epoch: tuple[int, list[np.ndarray]] = (-1, [])
        self._copy_valid: Optional[float] = None
        if not cfg.src_vocab:
            if cfg.data != "dates" and not have_sacrebleu():
                raise ConfigError(f"translate: data {cfg.data!r} is scored with BLEU, which needs sacrebleu: "
                                  f"{INSTALL_HINT}")
            src, tgt = self._build_vocabs()
            cfg.src_vocab, cfg.tgt_vocab = src.tokens, tgt.tokens  # written to config.json by the Trainer
        self.src_vocab = Vocab(tuple(cfg.src_vocab), cfg.tokens)
        self.tgt_vocab = Vocab(tuple(cfg.tgt_vocab), cfg.tokens)

    # ..................................................................... data

    def splits(self) -> dict[str, list[Pair]]:
        """{"train", "valid", "test"} pairs; for dates, train is empty (batches are generated)."""
        if self._splits is None:
            c = self.cfg
            if c.data == "dates":
                valid = D.held_out_set(max(c.eval_size, 1), D.VALID_SEED)
                self._splits = {"train": [], "valid": valid, "test": D.held_out_set(c.test_size, D.TEST_SEED)}
            else:
                pairs = (gettext_pairs(c.language, c.locale_dir, c.max_chars) if c.data == "gettext"
                         else read_tsv(c.data, c.max_chars))
                self._splits = split_pairs(pairs)
                for name in SPLITS:
                    if not self._splits[name]:
                        raise DataError(f"{c.data}: {len(pairs)} pairs leave the {name} split empty "
                                                 "(the 90/5/5 split needs a few dozen pairs at least)")
        return self._splits

    def _build_vocabs(self) -> tuple[Vocab, Vocab]:
        c = self.cfg
        if c.data == "dates":
            return Vocab.build([], "char", always=D.alphabet()), Vocab.build([], "char", always=ISO_ALPHABET)
        train = self.splits()["train"]
        src = Vocab.build((s for s, _ in train), c.tokens, c.max_vocab, c.min_count)
        tgt = Vocab.build((t for _, t in train), c.tokens, c.max_vocab, c.min_count)
        return src, tgt

    def _encoded_train(self) -> list[tuple[list[int], list[int]]]:
        if self._train_ids is None:
            pairs = [(self.src_vocab.token_ids(s), self.tgt_vocab.token_ids(t)) for s, t in self.splits()["train"]]
            self._train_ids = [(s, t) for s, t in pairs if len(s) <= self.cfg.max_len and len(t) <= self.cfg.max_len]
            if not self._train_ids:
                raise DataError(f"{self.cfg.data}: no training pair has at most max_len = {self.cfg.max_len} "
                                         "tokens per side")
        return self._train_ids

    def make_batch(self, pairs: list[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
        """{"src" (B, S), "src_lengths" (B,), "tgt" (B, T + 2) = <s> y </s> padded}."""
        src, lengths = pad([s for s, _ in pairs])
        tgt, _ = pad([t for _, t in pairs], ([BOS], [EOS]))
        return {"src": src, "src_lengths": lengths, "tgt": tgt}

    def _epoch_batches(self, epoch: int, batch_size: int) -> list[np.ndarray]:
        """Epoch's batches of pair indices: shuffled, sorted by length within buckets, order shuffled."""
        if self._epoch[0] != epoch:
            data = self._encoded_train()
            rng = np.random.default_rng([self.cfg.data_seed, epoch])
            perm = rng.permutation(len(data))
            batches = []
            for s in range(0, len(perm), BUCKET * batch_size):
                chunk = perm[s : s + BUCKET * batch_size]
                chunk = chunk[np.argsort([len(data[i][0]) + len(data[i][1]) for i in chunk], kind="stable")]
                batches += [chunk[j : j + batch_size] for j in range(0, len(chunk) - batch_size + 1, batch_size)]
            if not batches:  # fewer pairs than one batch: draw with repetition
                batches = [np.resize(perm, batch_size)]
            rng.shuffle(batches)
            self._epoch = (epoch, batches)
        return self._epoch[1]

    def global_batch(self, k: int, batch_size: int) -> dict[str, Tensor]:
        if self.cfg.data == "dates":
            pairs = D.train_batch(self.cfg.data_seed, k, batch_size)
            return self.make_batch([(self.src_vocab.token_ids(s), self.tgt_vocab.token_ids(t)) for s, t in pairs])
        per_epoch = len(self._epoch_batches(0, batch_size))
        epoch, j = divmod(k, per_epoch)
        data = self._encoded_train()
        return self.make_batch([data[i] for i in self._epoch_batches(epoch, batch_size)[j]])

    # ..................................................................... model and loss

    def build_model(self) -> nn.Module:
        c = self.cfg
        return Seq2Seq(len(self.src_vocab), len(self.tgt_vocab), c.embedding_size, c.hidden_size, c.num_layers,
                       c.bidirectional, c.attention, c.input_feed, c.dropout, c.backend, **c.lstm.kwargs())

    def windows(self, batch: Any, k: int) -> list[Any]:
        # Each pair is one sequence for the encoder and one for the decoder: nothing to carry.
        raise ValueError(f"translate: train.tbptt must be 0 (whole sentences per step), got {k}")

    def loss(self, model: nn.Module, batch: Any, state: Any, smoothing: Optional[float] = None) -> tuple[Tensor, Any]:
        tgt = batch["tgt"]
        logits = model(batch["src"], batch["src_lengths"], tgt[:, :-1])  # (B, T, V) — teacher forcing
        ls = self.cfg.label_smoothing if smoothing is None else smoothing
        return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD, label_smoothing=ls), None

    # ..................................................................... evaluation

    @torch.no_grad()
    def valid_loss(self, model: nn.Module, batch_size: int = 128) -> float:
        """Mean cross-entropy (nats per target token, </s> included) over the validation split."""
        dev = next(model.parameters()).device
        pairs = [(self.src_vocab.token_ids(s), self.tgt_vocab.token_ids(t)) for s, t in self.splits()["valid"]]
        total, count = 0.0, 0
        for s in range(0, len(pairs), batch_size):
            b = {k: v.to(dev) for k, v in self.make_batch(pairs[s : s + batch_size]).items()}
            n = int((b["tgt"][:, 1:] != PAD).sum())
            total += float(self.loss(model, b, None, smoothing=0.0)[0]) * n
            count += n
        return total / count

    def score(self, model: nn.Module, split: str = "test", beam: int = 1, alpha: Optional[float] = None,
              limit: int = 0, replace_unk: bool = True) -> dict[str, float]:
        """Scores of ``split`` (first ``limit`` sentences; 0: all) decoded with the given beam.

        Dates: exact_match. Otherwise: bleu, the copy-the-source baseline copy_bleu, and
        exact_match. Always: sentences.
        """
        if split not in SPLITS or (split == "train" and self.cfg.data == "dates"):
            raise ValueError(f"split must be valid or test{'' if self.cfg.data == 'dates' else ' or train'}, got {split!r}")
        pairs = self.splits()[split]
        pairs = pairs[:limit] if limit else pairs
        sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
        alpha = self.cfg.length_penalty if alpha is None else alpha
        hyps = translate(model, self.src_vocab, self.tgt_vocab, sources, beam, alpha, replace_unk=replace_unk)
        out = {"sentences": float(len(pairs)), "exact_match": exact_match(hyps, refs)}
        if self.cfg.data != "dates":
            out["bleu"] = corpus_bleu(hyps, refs)
            out["copy_bleu"] = corpus_bleu(sources, refs)
        return out

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = {"loss": self.valid_loss(model)}
        if self.cfg.eval_size and (self.cfg.data == "dates" or have_sacrebleu()):  # a resume without sacrebleu: loss only
            scores = self.score(model, "valid", beam=1, limit=self.cfg.eval_size)
            scores.pop("sentences")
            out.update(scores)
        return out


@register_task("translate", TranslateConfig,
               help="encoder-decoder LSTM with attention (dates → ISO, gettext EN→FR, or a TSV of pairs)",
               train_defaults={"lr": 2e-3, "batch_size": 64, "steps": 4000, "eval_every": 500, "weight_decay": 0.0,
                               "warmup_steps": 100, "min_lr_ratio": 0.05, "threads": 1})
def make_translate(cfg: TranslateConfig) -> TranslateTask:
    return TranslateTask(cfg)
