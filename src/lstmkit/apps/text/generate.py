"""Sampling text from a CharLM, one character at a time with the (h, c) state carried.

    >>> import torch
    >>> from lstmkit.apps.text import CharLM, Vocab, generate
    >>> vocab = Vocab.of_chars("\\nabc")
    >>> model = CharLM(len(vocab), 8, 8).eval()
    >>> len("".join(generate(model, vocab, prime="ab", length=10, seed=0)))
    10
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from ..vocab import Vocab


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0: off), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1: off), got {top_p}")


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                generator: Optional[torch.Generator] = None) -> int:
    """One id drawn from logits (V,).

    temperature 0 is greedy (argmax). top_k > 0 keeps the k most likely ids; top_p < 1 keeps the
    smallest set of most likely ids whose probability reaches top_p (nucleus sampling). Both
    filters apply to the temperature-scaled distribution.
    """
    check_sampling(temperature, top_k, top_p)
    logits = logits.detach().double().flatten()  # (V,)
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        probs, order = torch.sort(torch.softmax(logits, 0), descending=True)
        before = torch.cumsum(probs, 0) - probs  # mass of the ids ranked above each one
        drop = order[before >= top_p]  # the first id is never dropped (before = 0)
        logits[drop] = float("-inf")
    probs = torch.softmax(logits, 0)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def generate(model: nn.Module, vocab: Vocab, prime: str = "", length: int = 500, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, seed: Optional[int] = None) -> Iterator[str]:
    """Yield ``length`` new characters after ``prime``, each as soon as it is drawn.

    The prime is run through the model in one call; then each drawn character is fed back alone,
    carrying (h, c), so the cost per character is one LSTM step. An empty prime starts from a
    newline (or the vocabulary's first character if there is no newline). Same seed, same text.
    """
    check_sampling(temperature, top_k, top_p)
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if not prime:
        prime = "\n" if "\n" in vocab.chars else vocab.chars[0]
    ids = vocab.encode(prime)  # DataError names a character the model has not seen
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    dev = next(model.parameters()).device
    try:
        logits, state = model(ids.view(1, -1).to(dev))  # (1, T, V)
        for _ in range(length):
            nxt = sample_next(logits[0, -1].cpu(), temperature, top_k, top_p, gen)
            yield vocab.chars[nxt]
            logits, state = model(torch.tensor([[nxt]], device=dev), state)  # (1, 1, V)
    finally:
        model.train(was_training)


__all__ = ["check_sampling", "generate", "sample_next"]
