"""The "text" task of ``lstmkit train``: a character language model trained with truncated BPTT.

    lstmkit train text                              # the embedded Shakespeare slice
    lstmkit train text --data notes.txt --hidden_size 256 --train.steps 1000

The text is split once, 90 % train / 10 % valid (contiguous). Training cuts the train part into
B parallel streams (B = train.batch_size); batch k is the next ``seq_len`` characters of every
stream and carries the LSTM state over from batch k-1 (the Trainer's "reset" mask restarts it
when the streams wrap around). ``train.tbptt`` may cut each batch further. Evaluation reports
the validation loss in nats/char and bits/char beside an order-3 character n-gram fitted on the
same split (``order3_ngram_loss``): order in the Markov-chain sense, three characters of
context, interpolated smoothing; the baseline issue #7 quotes as 1.81 (see data.ngram_nats).
The character vocabulary is written into the run's config (``vocab``), so ``lstmkit generate
RUN`` needs no data.

The defaults are the configuration chosen for issue #7's target on the embedded text, validation
<= 1.6 nats/char within 10 minutes on 2 CPU cores (measured: 1.567 after 628 s of CPU on one
thread; benchmarks/results/text_shakespeare.md): one layer of 512 cells,
dropout 0.1 on the embeddings and before the decoder, 32 streams × 64 characters per step,
2,500 AdamW steps at 3e-3 with 100 warm-up steps and a cosine decay to 5 %. Per character that
is a 1×512 LSTM's cost; per step, 2,048 characters — short windows with the state carried give
twice the updates of 128-character windows for the same compute, which is what the time limit
rewards. threads 0 lets torch use one thread per core.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...train.registry import register_task
from ...viz import GateStates, collect_states
from ...train.task import Task
from ..errors import DataError
from ..explore import ExplorerRequest, explorable
from ..lstm_config import LSTMConfig
from ..vocab import Vocab
from .data import BUILTIN, load_text, ngram_nats, split_text, streams
from .model import CELLS, CharLM


@dataclass
class TextConfig:
    """Options of the "text" task (see the module docstring)."""

    data: str = BUILTIN  # "shakespeare" (embedded) or a path to a UTF-8 text file
    seq_len: int = 64  # characters per stream per batch (the state carries on to the next)
    embedding_size: int = 64
    hidden_size: int = 512
    num_layers: int = 1
    dropout: float = 0.1
    tie_weights: bool = False  # needs embedding_size == hidden_size (proj_size when projecting)
    backend: str = "auto"
    lstm: LSTMConfig = field(default_factory=LSTMConfig)  # [lstm]: lk.LSTM's variants (model = "lstm" only)
    model: str = "lstm"  # the recurrent cell: "lstm", "rnn" (tanh), or the xLSTM cells "slstm" / "mlstm"
    num_heads: int = 4  # heads of the sLSTM / mLSTM cells (must divide hidden_size)
    eval_streams: int = 16  # the valid text is scored as this many parallel streams
    ngram_context: int = 3  # the n-gram baseline's characters of context (its order); 0: no baseline
    vocab: str = ""  # filled in from the text at the start of training; kept so generation needs no data
    # Runs written before ngram_context existed say ngram_order = n (an n-gram: n - 1 characters of
    # context; 0: none). Read as ngram_context = n - 1 so their folders still load; null in new runs.
    ngram_order: Optional[int] = None
    # Runs written before the [lstm] section held these variants at the top level.
    RENAMED: ClassVar[dict[str, str]] = LSTMConfig.legacy_keys(
        "layer_norm", "peephole", "coupled", "zoneout", "recurrent_dropout")

    def __post_init__(self) -> None:
        if self.model not in CELLS:
            raise ValueError(f"text: model must be one of {', '.join(CELLS)}, got {self.model!r}")
        for name in ("seq_len", "embedding_size", "hidden_size", "num_layers", "eval_streams", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"text: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"text: dropout must be in [0, 1), got {self.dropout}")
        if self.model != "lstm" and self.lstm.kwargs():
            raise ValueError(f"text: the [lstm] section ({', '.join(sorted(self.lstm.kwargs()))}) applies to "
                             f"model = 'lstm' only, got model = {self.model!r}")
        self.lstm.check_hidden_size(self.hidden_size, "text")
        out_size = self.lstm.output_size(self.hidden_size)
        if self.tie_weights and self.embedding_size != out_size:
            size = "lstm.proj_size" if self.lstm.proj_size else "hidden_size"
            raise ValueError(f"text: tie_weights needs embedding_size == {size}, got {self.embedding_size} and {out_size}")
        if self.ngram_order is not None:
            self.ngram_context, self.ngram_order = max(0, self.ngram_order - 1), None
        if self.ngram_context < 0:
            raise ValueError(f"text: ngram_context must be >= 0, got {self.ngram_context}")
        # A file is recorded by absolute path, so the run resumes from any folder.
        if self.data != BUILTIN and os.path.isfile(self.data):
            self.data = os.path.abspath(self.data)


@explorable("text")
class TextTask(Task):
    """Reads the text lazily: a run rebuilt for generation needs only the saved vocabulary."""

    explorer_reads = "text"  # the gate explorer colours each character of a text

    def __init__(self, cfg: TextConfig) -> None:
        self.cfg = cfg
        self._split: Optional[tuple[Tensor, Tensor]] = None
        self._ngram: Optional[float] = None
        if not cfg.vocab:
            self._load()
            cfg.vocab = self.vocab.chars  # written to config.json by the Trainer
        self.vocab = Vocab.of_chars(cfg.vocab)

    def _load(self) -> tuple[Tensor, Tensor]:
        if self._split is None:
            text = load_text(self.cfg.data)
            train, valid = split_text(text)
            if len(valid) < 2:
                raise DataError(f"{self.cfg.data}: {len(text)} characters is too short to hold out 10 % for validation")
            if not self.cfg.vocab:
                self.vocab = Vocab.from_text(text)
            vocab = self.vocab if not self.cfg.vocab else Vocab.of_chars(self.cfg.vocab)
            self._text = (train, valid)
            self._split = (vocab.encode(train), vocab.encode(valid))
        return self._split

    def build_model(self) -> nn.Module:
        c = self.cfg
        return CharLM(len(self.vocab), c.embedding_size, c.hidden_size, c.num_layers, c.dropout, c.tie_weights,
                      backend=c.backend, cell=c.model, num_heads=c.num_heads, **c.lstm.kwargs())

    def reset_state(self, state: Any, mask: Tensor) -> Any:
        """Zero the rows of restarted streams; every cell's state tensors have the batch at dim 1
        ((L, B, H) for the LSTM and sLSTM, up to (L, B, NH, d, d) for mLSTM's matrix memory)."""
        keep = ~mask.bool()
        return type(state)(t * keep.to(t.dtype).view(1, -1, *([1] * (t.dim() - 2))) for t in state)

    def global_batch(self, k: int, batch_size: int) -> dict[str, Tensor]:
        """Batch k: characters [j·s, (j+1)·s) of each of the B streams (j = k mod windows per pass)."""
        S = streams(self._load()[0], batch_size)  # (B, L)
        s = self.cfg.seq_len
        per_pass = (S.shape[1] - 1) // s
        if per_pass < 1:
            raise ValueError(f"text: streams of {S.shape[1]} characters are shorter than seq_len + 1 = {s + 1}; "
                             "lower --seq_len or --train.batch_size")
        j = k % per_pass
        x = S[:, j * s : (j + 1) * s]  # (B, s)
        y = S[:, j * s + 1 : (j + 1) * s + 1]  # (B, s)
        return {"x": x, "y": y, "reset": torch.full((batch_size,), j == 0)}


    def loss(self, model: nn.Module, batch: Any, state: Any) -> tuple[Tensor, Any]:
        logits, state = model(batch["x"], state)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten()), state

    @torch.no_grad()
    def valid_nats(self, model: nn.Module) -> float:
        """Mean nats/char over the valid text, scored as eval_streams streams carrying their state."""
        ids = self._load()[1]
        n = max(1, min(self.cfg.eval_streams, (len(ids) - 1) // 2))
        dev = next(model.parameters()).device
        S = streams(ids, n).to(dev)  # (n, L)
        total, count, state = 0.0, 0, None
        for s in range(0, S.shape[1] - 1, self.cfg.seq_len):
            x = S[:, s : s + self.cfg.seq_len]
            y = S[:, s + 1 : s + 1 + self.cfg.seq_len]
            x = x[:, : y.shape[1]]
            logits, state = model(x, state)
            total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
            count += y.numel()
        return total / count

    def ngram_baseline(self) -> float:
        if self._ngram is None:
            self._load()
            self._ngram = ngram_nats(*self._text, context=self.cfg.ngram_context)
        return self._ngram

    def gate_states(self, model: nn.Module, request: ExplorerRequest) -> GateStates:
        """The gate explorer's hook: the CharLM's LSTM over request.text (see text_states)."""
        return text_states(model, self.vocab, request.text, title=request.title)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        nats = self.valid_nats(model)
        out = {"loss": nats, "bits_per_char": nats / math.log(2)}
        if self.cfg.ngram_context:
            # The order is in the name, so the printed line says which baseline it is.
            out[f"order{self.cfg.ngram_context}_ngram_loss"] = self.ngram_baseline()
        return out


def text_states(model: CharLM, vocab: Vocab, text: str, title: str = "") -> GateStates:
    """GateStates of a CharLM's LSTM over ``text`` (its embedded characters are the LSTM's input)."""
    ids = vocab.encode(text)  # DataError names a character the model has not seen
    with torch.no_grad():
        x = model.embedding(ids.to(next(model.parameters()).device))  # (T, E)
    return collect_states(model.lstm, x, list(text), title=title)


@register_task("text", TextConfig, help="character language model (embedded Shakespeare or a UTF-8 file)",
               train_defaults={"lr": 3e-3, "batch_size": 32, "steps": 2500, "eval_every": 500, "weight_decay": 0.0,
                               "warmup_steps": 100, "min_lr_ratio": 0.05, "threads": 0})
def make_text(cfg: TextConfig) -> TextTask:
    return TextTask(cfg)
