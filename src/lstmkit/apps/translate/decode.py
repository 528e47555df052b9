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

from ..vocab import BOS, EOS, UNK, Vocab


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


def _max_lens(lengths: Tensor, max_len: Optional[int]) -> list[int]:
    """Each sentence's output limit: max_len, or by default from its own source length (so a
    sentence decodes the same alone and in any batch)."""
    return [max_len or default_max_len(int(n)) for n in lengths.tolist()]


@torch.no_grad()
def greedy(model: nn.Module, src: Tensor, lengths: Tensor, max_len: Optional[int] = None,
           alpha: float = 0.0) -> list[Hypothesis]:
    """The most likely next token at every step, for a batch: src (B, S), lengths (B,) → B hypotheses."""
    model.eval()
    B = src.shape[0]
    limits = _max_lens(lengths, max_len)
    memory, state = model.encode(src, lengths)
    feed = model.initial_feed(state)
    prev = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    limit = torch.tensor(limits, device=src.device)
    ll = torch.zeros(B, dtype=torch.float64)
    tokens, attended = [], []
    for step in range(max(limits)):
        logits, state, feed, weights = model.decode_step(prev, state, feed, memory)
        logp = torch.log_softmax(logits.double(), -1)  # (B, V)
        prev = logp.argmax(-1)  # (B,)
        ll += torch.where(done, 0.0, logp.gather(1, prev[:, None]).squeeze(1)).cpu()
        tokens.append(prev.cpu())
        attended.append(weights.argmax(-1).cpu())
        done |= (prev == EOS) | (limit <= step + 1)
        if bool(done.all()):
            break
    T, A = torch.stack(tokens, 1).tolist(), torch.stack(attended, 1).tolist()  # (B, steps)
    out = []
    for b in range(B):
        n = min(T[b].index(EOS) + 1 if EOS in T[b] else len(T[b]), limits[b])
        out.append(Hypothesis(T[b][:n], float(ll[b]), float(ll[b]) / length_penalty(n, alpha), A[b][:n]))
    return out


class _Beam:
    """One sentence's search: its live and finished hypotheses and its output limit."""

    def __init__(self, max_len: int, alpha: float) -> None:
        self.live: list[Hypothesis] = [Hypothesis([], 0.0)]
        self.finished: list[Hypothesis] = []
        self.max_len, self.alpha = max_len, alpha
        self.best_bound = length_penalty(max_len, alpha)  # ll < 0 divided by the largest lp it can still get
        self.done = False

    def advance(self, step: int, logp: Tensor, where: list[int], beam: int) -> list[int]:
        """Extend the live hypotheses by one token given their logp (n_live, V); returns the rows kept."""
        total = torch.tensor([h.log_likelihood for h in self.live], dtype=torch.float64)[:, None] + logp
        # 2·beam candidates always hold `beam` that do not end here, if that many exist.
        values, flat = total.flatten().topk(min(2 * beam, total.numel()))
        keep_rows, new_live = [], []
        for rank, (v, i) in enumerate(zip(values.tolist(), flat.tolist())):
            row, tok = divmod(i, logp.shape[1])
            h = Hypothesis(self.live[row].tokens + [tok], v, 0.0, self.live[row].attended + [where[row]])
            if tok == EOS:
                if rank < beam:  # as in fairseq: an ending counts if it is among the top `beam`
                    h.score = v / length_penalty(len(h.tokens), self.alpha)  # (so beam 1 is exactly greedy)
                    self.finished.append(h)
            elif len(new_live) < beam:
                new_live.append(h)
                keep_rows.append(row)
        self.live = new_live
        if not new_live:
            self.done = True
            return []
        best_done = max((h.score for h in self.finished), default=float("-inf"))
        can_reach = max(h.log_likelihood for h in new_live) / (self.best_bound if self.alpha > 0 else 1.0)
        if best_done >= can_reach:  # ll only falls and lp only helps up to lp(max_len): nothing live can win now
            self.done, self.live = True, []
            return []
        if step + 1 == self.max_len:  # max_len reached: the live hypotheses are cut, scored as they are
            for h in new_live:
                h.score = h.log_likelihood / length_penalty(len(h.tokens), self.alpha)
            self.finished.extend(new_live)
            self.done, self.live = True, []
            return []
        return keep_rows


@torch.no_grad()
def beam_search_batch(model: nn.Module, src: Tensor, lengths: Tensor, beam: int = 5, max_len: Optional[int] = None,
                      alpha: float = 0.6, keep_greedy: bool = True) -> list[Hypothesis]:
    """The best hypothesis of each sentence of a batch, src (B, S) right-padded, lengths (B,), by
    ll / lp(|y|): every sentence's beams advance together, one decoder step for all of them.

    Each sentence's search is its own (its limit, its stopping test), so a sentence gets the same
    result alone as in any batch, up to floating-point rounding of the batched products.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    if src.dim() != 2 or lengths.shape != src.shape[:1] or bool((lengths < 1).any()):
        raise ValueError(f"beam_search_batch: expected src (B, S) and lengths (B,) of non-empty sentences, got "
                         f"{tuple(src.shape)} and {lengths.tolist()}")
    model.eval()
    dev = src.device
    searches = [_Beam(n, alpha) for n in _max_lens(lengths, max_len)]
    memory, state = model.encode(src, lengths)
    feed = model.initial_feed(state)
    owner = list(range(len(searches)))  # the sentence of each decoder row
    for step in range(max(s.max_len for s in searches)):
        sentences = list(dict.fromkeys(owner))  # those with live rows, in row order
        prev = torch.tensor([h.tokens[-1] if h.tokens else BOS for b in sentences for h in searches[b].live],
                            device=dev)
        rows = torch.tensor(owner, device=dev)
        logits, state, feed, weights = model.decode_step(prev, state, feed, memory.select(rows))
        logp = torch.log_softmax(logits.double(), -1).cpu()  # (rows, V)
        where = weights.argmax(-1).tolist()
        keep, new_owner, r0 = [], [], 0
        for b in sentences:
            n = len(searches[b].live)
            kept = searches[b].advance(step, logp[r0 : r0 + n], where[r0 : r0 + n], beam)
            keep += [r0 + r for r in kept]
            new_owner += [b] * len(kept)
            r0 += n
        if not keep:
            break
        index = torch.tensor(keep, device=dev)
        state = (state[0].index_select(1, index), state[1].index_select(1, index))
        feed = feed.index_select(0, index) if feed is not None else None
        owner = new_owner
    best = [max(s.finished, key=lambda h: h.score) for s in searches]
    if keep_greedy and beam > 1:
        for b, g in enumerate(greedy(model, src, lengths, max_len, alpha)):
            if g.score > best[b].score:
                best[b] = g
    return best


def beam_search(model: nn.Module, src: Tensor, beam: int = 5, max_len: Optional[int] = None, alpha: float = 0.6,
                keep_greedy: bool = True) -> Hypothesis:
    """The best hypothesis for one source sentence src (S,) (no padding), by ll / lp(|y|)."""
    if src.dim() != 1 or src.numel() == 0:
        raise ValueError(f"beam_search: expected one non-empty source sentence (S,), got shape {tuple(src.shape)}")
    return beam_search_batch(model, src[None], torch.tensor([src.numel()]), beam, max_len, alpha, keep_greedy)[0]


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
    """Translations of ``texts``: greedy (beam 1) or beam search, in batches of sentences of similar
    length (batch_size decoder rows: batch_size // beam sentences with a beam).

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
        todo.sort(key=lambda i: len(toks[i]))  # similar lengths per batch: less padding
        per_batch = max(1, batch_size // beam)
        for s in range(0, len(todo), per_batch):
            idx = todo[s : s + per_batch]
            src, lengths = pad([src_vocab.ids(toks[i]) for i in idx])
            if beam == 1:
                hyps = greedy(model, src.to(dev), lengths, max_len, alpha)
            else:
                hyps = beam_search_batch(model, src.to(dev), lengths, beam, max_len, alpha)
            for i, h in zip(idx, hyps):
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


__all__ = ["Hypothesis", "beam_search", "beam_search_batch", "default_max_len", "detokenize", "greedy", "length_penalty", "pad",
           "translate"]
