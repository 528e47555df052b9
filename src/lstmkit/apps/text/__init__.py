"""Character language model and text generation (registers ``lstmkit train text``).

Pieces: data (embedded Shakespeare / a UTF-8 file, 90/10 split, n-gram baseline), model (embedding
→ lk.LSTM → decoder), task (the Trainer task "text" and the gate explorer's hook), generate (the
use: temperature, top-k, top-p sampling, streamed step by step with the state carried). The
character vocabulary is lstmkit.apps.vocab's Vocab.
"""
from ..errors import DataError
from ..vocab import Vocab
from .data import BUILTIN, TextDataError, load_text, ngram_nats, split_text
from .generate import generate, sample_next
from .model import CharLM
from .task import TextConfig, TextTask

__all__ = ["BUILTIN", "CharLM", "DataError", "TextConfig", "TextDataError", "TextTask", "Vocab", "generate", "load_text",
           "ngram_nats", "sample_next", "split_text"]
