"""Greedy and beam-search decoding of a Seq2Seq, with the model's log-likelihood of what they return.

Log-likelihood ``ll(y) = Σ_t log p(y_t | y_<t, x)`` counts every output token including </s>.
Beam search ranks finished hypotheses by ``ll / lp(|y|)`` with Wu et al.'s (2016) length
penalty ``lp(n) = ((5 + n) / 6) ** alpha`` (alpha = 0: plain log-likelihood; larger alpha favours
longer outputs, which plain log-likelihood undervalues). It stops as soon as no live hypothesis
can still beat the best finished one, or at max_len.

Beam search is not monotone in the beam size: the greedy path can fall out of the beam (other
hypotheses outscore its prefix) and the beam can end on something worse. ``keep_greedy=True``
(default) also decodes greedily and keeps the greedy output when it scores higher, so beam
search is never worse than greedy under the ranking score (with alpha = 0: in log-likelihood).

``<unk>`` in the output can be replaced by the source token that step attended to most (Luong
et al. 2015's unknown-word replacement): names, options and numbers are usually copied, and a
word-level vocabulary does not hold them all.

    >>> # hyps = greedy(model, src, lengths); hyp = beam_search(model, src[0, :lengths[0]], beam=5)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .vocab import BOS, EOS, UNK, Vocab


@dataclass
class Hypothesis:
    """One output: token ids (ending with EOS unless cut at max_len), its log-likelihood and score."""

    tokens: list[int]
    log_likelihood: float
    score: float = 0.0
    attended: list[int] = field(default_factory=list)  # per output token: the source position most attended

    @property
    def finished(self) -> bool:
        return bool(self.tokens) and self.tokens[-1] == EOS


def length_penalty(n: int, alpha: float) -> float:
    return ((5.0 + n) / 6.0) ** alpha


def default_max_len(src_len: int) -> int:
    return 2 * src_len + 10


@torch.no_grad()
def greedy(model: nn.Module, src: Tensor, lengths: Tensor, max_len: Optional[int] = None,
           alpha: float = 0.0) -> list[Hypothesis]:
    """The most likely next token at every step, for a batch: src (B, S), lengths (B,) → B hypotheses."""
    model.eval()
    B = src.shape[0]
    max_len = max_len or default_max_len(int(lengths.max()))
    memory, state = model.encode(src, lengths)
    feed = model.initial_feed(state)
    prev = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    ll = torch.zeros(B, dtype=torch.float64)
    tokens, attended = [], []
    for _ in range(max_len):
        logits, state, feed, weights = model.decode_step(prev, state, feed, memory)
        logp = torch.log_softmax(logits.double(), -1)  # (B, V)
        prev = logp.argmax(-1)  # (B,)
        ll += torch.where(done, 0.0, logp.gather(1, prev[:, None]).squeeze(1)).cpu()
        tokens.append(prev.cpu())
        attended.append(weights.argmax(-1).cpu())
        done |= prev == EOS
        if bool(done.all()):
            break
    T, A = torch.stack(tokens, 1).tolist(), torch.stack(attended, 1).tolist()  # (B, steps)
    out = []
    for b in range(B):
        n = T[b].index(EOS) + 1 if EOS in T[b] else len(T[b])
        out.append(Hypothesis(T[b][:n], float(ll[b]), float(ll[b]) / length_penalty(n, alpha), A[b][:n]))
    return out


@torch.no_grad()
def beam_search(model: nn.Module, src: Tensor, beam: int = 5, max_len: Optional[int] = None, alpha: float = 0.6,
                keep_greedy: bool = True) -> Hypothesis:
    """The best hypothesis for one source sentence src (S,) (no padding), by ll / lp(|y|)."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    if src.dim() != 1 or src.numel() == 0:
        raise ValueError(f"beam_search: expected one non-empty source sentence (S,), got shape {tuple(src.shape)}")
    model.eval()
    dev = src.device
    max_len = max_len or default_max_len(src.numel())
    memory, state = model.encode(src[None], torch.tensor([src.numel()]))
    feed = model.initial_feed(state)
    live: list[Hypothesis] = [Hypothesis([], 0.0)]
    finished: list[Hypothesis] = []
    best_bound = length_penalty(max_len, alpha)  # ll < 0 divided by the largest lp it can still get
    for t in range(max_len):
        n = len(live)
        mem = memory.select(torch.zeros(n, dtype=torch.long, device=dev))
        prev = torch.tensor([h.tokens[-1] if h.tokens else BOS for h in live], device=dev)
        logits, state, feed, weights = model.decode_step(prev, state, feed, mem)
        logp = torch.log_softmax(logits.double(), -1).cpu()  # (n, V)
        total = torch.tensor([h.log_likelihood for h in live], dtype=torch.float64)[:, None] + logp  # (n, V)
        # 2·beam candidates always hold `beam` that do not end here, if that many exist.
        values, flat = total.flatten().topk(min(2 * beam, total.numel()))
        where = weights.argmax(-1).tolist()
        keep_rows, new_live = [], []
        for rank, (v, i) in enumerate(zip(values.tolist(), flat.tolist())):
            row, tok = divmod(i, logp.shape[1])
            h = Hypothesis(live[row].tokens + [tok], v, 0.0, live[row].attended + [where[row]])
            if tok == EOS:
                if rank < beam:  # as in fairseq: an ending counts if it is among the top `beam`
                    h.score = v / length_penalty(len(h.tokens), alpha)  # (so beam 1 is exactly greedy)
                    finished.append(h)
            elif len(new_live) < beam:
                new_live.append(h)
                keep_rows.append(row)
        if not new_live:
            break
        best_done = max((h.score for h in finished), default=float("-inf"))
        can_reach = max(h.log_likelihood for h in new_live) / (best_bound if alpha > 0 else 1.0)
        if best_done >= can_reach:
            break  # ll only falls and lp only helps up to lp(max_len): nothing live can win now
        index = torch.tensor(keep_rows, device=dev)
        state = (state[0].index_select(1, index), state[1].index_select(1, index))
        feed = feed.index_select(0, index) if feed is not None else None
        live = new_live
    else:  # max_len reached: the live hypotheses are cut, scored as they are
        for h in live:
            h.score = h.log_likelihood / length_penalty(len(h.tokens), alpha)
        finished.extend(live)
    best = max(finished, key=lambda h: h.score)
    if keep_greedy and beam > 1:
        g = greedy(model, src[None], torch.tensor([src.numel()]), max_len, alpha)[0]
        if g.score > best.score:
            best = g
    return best


def detokenize(hyp: Hypothesis, vocab: Vocab, source_tokens: Optional[Sequence[str]] = None) -> str:
    """The text of a hypothesis; with source_tokens, each <unk> becomes the source token it attended to.

    A copied token keeps its own leading space except at the start of the output.
    """
    out = []
    for i, tok in enumerate(hyp.tokens):
        if tok == EOS:
            break
        if tok == UNK and source_tokens:
            piece = source_tokens[min(hyp.attended[i], len(source_tokens) - 1)]
            piece = piece.lstrip(" ") if not out else piece
        else:
            piece = vocab.tokens[tok] if tok > UNK else ("<unk>" if tok == UNK else "")
        out.append(piece)
    return "".join(out)


def translate(model: nn.Module, src_vocab: Vocab, tgt_vocab: Vocab, texts: Sequence[str], beam: int = 1,
              alpha: float = 0.6, max_len: Optional[int] = None, replace_unk: bool = True,
              batch_size: int = 256) -> list[str]:
    """Translations of ``texts``: greedy in batches (beam 1) or beam search one sentence at a time.

    An empty (or all-whitespace) text translates to "".
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    dev = next(model.parameters()).device
    was_training = model.training
    out: list[str] = [""] * len(texts)
    toks = [src_vocab.split(t) for t in texts]
    todo = [i for i, t in enumerate(toks) if t]
    try:
        if beam == 1:
            todo.sort(key=lambda i: len(toks[i]))  # similar lengths per batch: less padding
            for s in range(0, len(todo), batch_size):
                idx = todo[s : s + batch_size]
                src, lengths = pad([src_vocab.ids(toks[i]) for i in idx])
                hyps = greedy(model, src.to(dev), lengths, max_len, alpha)
                for i, h in zip(idx, hyps):
                    out[i] = detokenize(h, tgt_vocab, toks[i] if replace_unk else None)
        else:
            for i in todo:
                h = beam_search(model, torch.tensor(src_vocab.ids(toks[i]), device=dev), beam, max_len, alpha)
                out[i] = detokenize(h, tgt_vocab, toks[i] if replace_unk else None)
    finally:
        model.train(was_training)
    return out


def pad(seqs: Sequence[Sequence[int]], extra: tuple[list[int], list[int]] = ([], [])) -> tuple[Tensor, Tensor]:
    """Right-pad id lists (each wrapped as extra[0] + seq + extra[1]) → ((B, max len) int64, lengths (B,))."""
    rows = [list(extra[0]) + list(s) + list(extra[1]) for s in seqs]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    out = torch.zeros(len(rows), int(lengths.max()) if rows else 0, dtype=torch.long)  # PAD = 0
    for b, r in enumerate(rows):
        out[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out, lengths


__all__ = ["Hypothesis", "beam_search", "default_max_len", "detokenize", "greedy", "length_penalty", "pad",
           "translate"]
