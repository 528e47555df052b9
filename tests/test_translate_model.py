"""Seq2Seq with attention: padding is ignored, teacher forcing equals step-by-step decoding,
greedy / beam search return what the model scores best, with the log-likelihood the model gives."""
from __future__ import annotations

import itertools

import pytest
import torch

from conftest import assert_close
from lstmkit.apps.translate.decode import beam_search, beam_search_batch, greedy, length_penalty, translate
from lstmkit.apps.translate.model import Seq2Seq
from lstmkit.apps.vocab import BOS, EOS, PAD, Vocab

V_SRC, V_TGT = 20, 12


def model(seed=0, scale=3.0, **kw) -> Seq2Seq:
    """A fixed random model; weights scaled up so its distributions are sharp and varied."""
    torch.manual_seed(seed)
    kw = {"embedding_size": 8, "hidden_size": 12, **kw}
    m = Seq2Seq(V_SRC, V_TGT, **kw).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def sources(n, seed=1, lo=2, hi=7):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, V_SRC, (int(torch.randint(lo, hi + 1, (1,), generator=g)),), generator=g)
            for _ in range(n)]


@torch.no_grad()
def log_likelihood(m, src, tokens) -> float:
    """The model's log p(tokens | src), by teacher forcing (an independent route from the decoders)."""
    tgt_in = torch.tensor([[BOS] + tokens[:-1]])
    logp = torch.log_softmax(m(src[None], torch.tensor([len(src)]), tgt_in), -1)[0]  # (T, V)
    return float(logp[torch.arange(len(tokens)), torch.tensor(tokens)].sum())


@pytest.mark.parametrize("attention", ["general", "additive", "dot"])
@pytest.mark.parametrize("input_feed", [False, True])
def test_attention_ignores_padding(attention, input_feed):
    m = model(attention=attention, input_feed=input_feed, bidirectional=attention != "dot")
    src = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, PAD, PAD]])
    lengths = torch.tensor([5, 3])
    tgt = torch.tensor([[BOS, 4, 5, 6], [BOS, 7, 8, 9]])
    logits, weights = m(src, lengths, tgt, return_attention=True)
    assert torch.all(weights[1, :, 3:] == 0)  # exactly zero on padded positions
    assert_close(weights.sum(-1), torch.ones(2, 4, dtype=torch.float64), what="weights sum to 1")
    # Any ids in the padded positions: the same outputs.
    noisy = src.clone()
    noisy[1, 3:] = torch.tensor([13, 17])
    logits2, weights2 = m(noisy, lengths, tgt, return_attention=True)
    assert torch.equal(logits2, logits) and torch.equal(weights2, weights)
    # And the padded sentence alone gives what it gives in the batch.
    alone = m(src[1:, :3], lengths[1:], tgt[1:])
    assert_close(alone[0], logits[1], what="padded row vs alone")


@pytest.mark.parametrize("input_feed", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_teacher_forcing_equals_step_by_step(input_feed, bidirectional):
    m = model(input_feed=input_feed, bidirectional=bidirectional, num_layers=2)
    src = torch.tensor([[5, 6, 7, 8], [9, 10, PAD, PAD]])
    lengths = torch.tensor([4, 2])
    tgt = torch.tensor([[BOS, 4, 5, 6, 7], [BOS, 8, 9, 10, 11]])
    whole = m(src, lengths, tgt)  # (B, T, V)
    memory, state = m.encode(src, lengths)
    feed = m.initial_feed(state)
    for t in range(tgt.shape[1]):
        logits, state, feed, _ = m.decode_step(tgt[:, t], state, feed, memory)
        assert_close(logits, whole[:, t], what=f"step {t}")


def test_greedy_and_beam_log_likelihoods_are_the_models():
    m = model()
    for src in sources(10):
        g = greedy(m, src[None], torch.tensor([len(src)]), max_len=12)[0]
        assert g.log_likelihood == pytest.approx(log_likelihood(m, src, g.tokens), abs=1e-9)
        b = beam_search(m, src, beam=4, max_len=12, alpha=0.0)
        assert b.log_likelihood == pytest.approx(log_likelihood(m, src, b.tokens), abs=1e-9)
        assert b.score == pytest.approx(b.log_likelihood)  # alpha = 0: the score is the log-likelihood


def test_beam_is_never_worse_than_greedy():
    m = model(seed=3)
    better = 0
    for src in sources(30, seed=4):
        lengths = torch.tensor([len(src)])
        g = greedy(m, src[None], lengths, max_len=15)[0]
        for k in (2, 5):
            b = beam_search(m, src, beam=k, max_len=15, alpha=0.0)
            assert b.log_likelihood >= g.log_likelihood - 1e-12
            better += b.log_likelihood > g.log_likelihood + 1e-9
        # with a length penalty, the same holds for the penalized score
        b = beam_search(m, src, beam=3, max_len=15, alpha=1.0)
        assert b.score >= greedy(m, src[None], lengths, max_len=15, alpha=1.0)[0].score - 1e-12
    assert better > 10  # the beam finds better outputs than greedy, often


def test_beam_of_one_is_greedy():
    for input_feed in (False, True):
        m = model(seed=5, input_feed=input_feed)
        srcs = sources(30, seed=6)
        lengths = torch.tensor([len(s) for s in srcs])
        batch = torch.zeros(len(srcs), int(lengths.max()), dtype=torch.long)
        for i, s in enumerate(srcs):
            batch[i, : len(s)] = s
        batched = greedy(m, batch, lengths, max_len=15)  # padding in a batch changes nothing either
        for src, g in zip(srcs, batched):
            b = beam_search(m, src, beam=1, max_len=15, alpha=0.0, keep_greedy=False)
            assert b.tokens == g.tokens
            assert b.log_likelihood == pytest.approx(g.log_likelihood, abs=1e-9)


def _batch(srcs):
    lengths = torch.tensor([len(s) for s in srcs])
    batch = torch.zeros(len(srcs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(srcs):
        batch[i, : len(s)] = s
    return batch, lengths


@pytest.mark.parametrize("beam,alpha,max_len", [(1, 0.0, None), (3, 0.0, 9), (4, 0.6, None), (6, 1.0, 5)])
def test_a_sentence_decodes_the_same_alone_and_in_a_batch(beam, alpha, max_len):
    """Batched beam search runs every sentence's search on its own terms (limits, stopping), and
    greedy's default limit is each sentence's own: a translation never depends on its batch mates."""
    for input_feed, eos_bias in ((False, 1.0), (True, 2.0)):
        m = model(seed=9, input_feed=input_feed, bidirectional=True)
        with torch.no_grad():  # </s> likely enough that some outputs end early and others reach their limit
            m.out.bias[EOS] += eos_bias
        srcs = sources(12, seed=10, lo=1, hi=9)  # lengths 1..9: default limits 12..28 differ per sentence
        batch, lengths = _batch(srcs)
        together = beam_search_batch(m, batch, lengths, beam=beam, max_len=max_len, alpha=alpha)
        greedy_together = greedy(m, batch, lengths, max_len=max_len, alpha=alpha)
        for src, b, g in zip(srcs, together, greedy_together):
            alone = beam_search(m, src, beam=beam, max_len=max_len, alpha=alpha)
            assert b.tokens == alone.tokens and b.attended == alone.attended
            assert b.score == pytest.approx(alone.score, abs=1e-9)
            g_alone = greedy(m, src[None], torch.tensor([len(src)]), max_len=max_len, alpha=alpha)[0]
            assert g.tokens == g_alone.tokens
            assert g.log_likelihood == pytest.approx(g_alone.log_likelihood, abs=1e-9)
            assert len(g.tokens) <= (max_len or 2 * len(src) + 10)
            assert b.log_likelihood == pytest.approx(log_likelihood(m, src, b.tokens), abs=1e-9)


def test_a_wide_beam_finds_the_exact_best_output():
    # Tiny target vocabulary and max_len 3: every output can be enumerated and scored.
    torch.manual_seed(7)
    m = Seq2Seq(V_SRC, 6, embedding_size=6, hidden_size=8).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    for src in sources(3, seed=8):
        candidates = [list(c) + [EOS] for n in range(3) for c in itertools.product(range(6), repeat=n)
                      if EOS not in c]
        candidates += [list(c) for c in itertools.product(range(6), repeat=3) if EOS not in c]  # cut at max_len
        ll = {tuple(c): log_likelihood(m, src, c) for c in candidates}
        for alpha in (0.0, 0.8):
            best = max(ll[tuple(c)] / length_penalty(len(c), alpha) for c in candidates)
            found = beam_search(m, src, beam=40, max_len=3, alpha=alpha, keep_greedy=False)
            assert found.score == pytest.approx(best, abs=1e-9)
            assert found.log_likelihood == pytest.approx(ll[tuple(found.tokens)], abs=1e-9)


def test_translate_replaces_unknowns_with_the_attended_source_word():
    src_vocab = Vocab.build(["open the file"], "word")
    tgt_vocab = Vocab.build(["ouvrir le fichier"], "word")
    m = Seq2Seq(len(src_vocab), len(tgt_vocab), embedding_size=4, hidden_size=4).eval()
    with torch.no_grad():  # an output layer that always says <unk>, then </s> once <unk> was fed back
        m.out.weight.zero_()
        m.out.bias.zero_()
        m.out.bias[3] = 5.0
    out = translate(m, src_vocab, tgt_vocab, ["open Foo", ""], max_len=1)
    assert out[1] == "" and out[0] in ("open", "Foo")  # a source word, its leading space dropped at the start
    assert translate(m, src_vocab, tgt_vocab, ["open Foo"], max_len=1, replace_unk=False) == ["<unk>"]
    with pytest.raises(ValueError, match="beam must be >= 1, got 0"):
        translate(m, src_vocab, tgt_vocab, ["open"], beam=0)


def test_model_argument_errors():
    with pytest.raises(ValueError, match="dot attention needs the decoder size"):
        Seq2Seq(10, 10, hidden_size=8, attention="dot", bidirectional=True)
    with pytest.raises(ValueError, match="attention must be one of general, dot, additive, got 'luong'"):
        Seq2Seq(10, 10, attention="luong")
    with pytest.raises(ValueError, match="hidden_size must be >= 1, got 0"):
        Seq2Seq(10, 10, hidden_size=0)
    m = Seq2Seq(10, 10, embedding_size=4, hidden_size=4)
    with pytest.raises(ValueError, match=r"expected src \(B, S\) and lengths \(B,\), got \(3,\)"):
        m.encode(torch.tensor([4, 5, 6]), torch.tensor([3]))
    with pytest.raises(ValueError, match="one non-empty source sentence"):
        beam_search(m, torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match=r"non-empty sentences, got \(2, 3\) and \[3, 0\]"):
        beam_search_batch(m, torch.tensor([[4, 5, 6], [0, 0, 0]]), torch.tensor([3, 0]))
