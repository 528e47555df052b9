"""The long-lag generators follow the papers' definitions (Hochreiter & Schmidhuber 1997;
Arjovsky et al. 2016): marker rules, ranges, labels, grammar membership, seeding."""
from __future__ import annotations

import math

import pytest
import torch

from lstmkit.paper1997 import TASKS, make_task
from lstmkit.paper1997.base import IGNORE
from lstmkit.paper1997.copy import CopyTask, baseline
from lstmkit.paper1997.reber import (EMBEDDED_RE, REBER_RE, SYMBOLS, EmbeddedReber, embedded_reber_string, is_embedded_reber,
                                 legal_next, reber_string, sample_embedded_reber)
from lstmkit.paper1997.temporal_order import POSITIONS

N = 2000


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list(TASKS))
def test_same_seed_same_batch_other_seed_other_batch(name):
    task = make_task(name, 20 if name in ("adding", "multiplication", "long_lag", "copy") else None)
    a, b, c = task.sample(16, gen(3)), task.sample(16, gen(3)), task.sample(16, gen(4))
    assert torch.equal(a.x, b.x) and torch.equal(a.target, b.target)
    assert not torch.equal(a.x, c.x) or not torch.equal(a.target, c.target)
    assert a.x.shape[-1] == task.input_size
    # training batches are a function of (seed, k) only, and differ between k
    assert torch.equal(task.train_batch(5, 8, 1).x, task.train_batch(5, 8, 1).x)
    assert not torch.equal(task.train_batch(5, 8, 1).x, task.train_batch(6, 8, 1).x)


@pytest.mark.parametrize("T", [100, 500])
def test_adding_follows_section_5_4(T):
    batch = make_task("adding", T).sample(N, gen(1))
    x, lengths, target = batch.x, batch.lengths, batch.target
    assert lengths.min() >= T and lengths.max() <= T + T // 10
    assert lengths.min() == T and lengths.max() == T + T // 10  # both ends reached in 2,000 draws
    values, markers = x[..., 0], x[..., 1]
    steps = torch.arange(x.shape[1])
    inside = steps[None, :] < lengths[:, None]
    assert values[inside].min() >= -1 and values[inside].max() <= 1
    assert values[~inside].abs().sum() == 0 and markers[~inside].abs().sum() == 0
    assert values[inside].mean().abs() < 0.02  # uniform on [-1, 1]
    rows = torch.arange(N)
    marked = markers == 1.0
    assert (marked.sum(1) == 2).all()
    first = marked.float().argmax(1)  # the earliest marked position
    assert (first < 10).all()
    last_marked = (marked.float() * steps).max(1).values
    assert (last_marked < T // 2).all()
    # every marker is -1, 0 or 1; -1 only on the first and final pair
    assert set(markers[inside].unique().tolist()) <= {-1.0, 0.0, 1.0}
    minus = markers == -1.0
    assert (minus.sum(1) == 2 - marked[:, 0].long()).all()
    assert (minus[rows, lengths - 1]).all()
    # target: 0.5 + (X1 + X2) / 4 from the marked values, in [0, 1]
    x1x2 = (values * marked).sum(1)
    torch.testing.assert_close(target, 0.5 + x1x2 / 4.0)
    assert target.min() >= 0 and target.max() <= 1
    # a marked first pair has value 0 (the paper's rare case)
    assert (values[marked[:, 0], 0] == 0).all()
    assert marked[:, 0].any()  # happens about 1 in 10 of the time
    # the second mark is uniform over the other T/2 - 1 positions: it reaches the far end
    assert (last_marked == T // 2 - 1).any()


def test_multiplication_follows_section_5_5():
    batch = make_task("multiplication", 100).sample(N, gen(2))
    values, markers = batch.x[..., 0], batch.x[..., 1]
    inside = torch.arange(values.shape[1])[None] < batch.lengths[:, None]
    assert values[inside].min() >= 0 and values[inside].max() <= 1
    marked = markers == 1.0
    product = torch.where(marked, values, torch.ones_like(values)).prod(1)
    torch.testing.assert_close(batch.target, product)
    assert (values[marked[:, 0], 0] == 1.0).all()  # first pair marked: X1 = 1.0


@pytest.mark.parametrize("variant", ["6a", "6b"])
def test_temporal_order_follows_section_5_6(variant):
    task = make_task(f"temporal_order_{variant}")
    batch = task.sample(N, gen(5))
    symbols = batch.x.argmax(-1)
    lengths = batch.lengths
    assert lengths.min() >= 100 and lengths.max() <= 110
    assert (batch.x.sum(-1)[torch.arange(batch.x.shape[1])[None] < lengths[:, None]] == 1).all()  # one-hot
    rows = torch.arange(N)
    assert (symbols[:, 0] == 0).all()  # E
    assert (symbols[rows, lengths - 1] == 1).all()  # trigger B
    relevant = (symbols == 6) | (symbols == 7)
    k = len(POSITIONS[variant])
    assert (relevant.sum(1) == k).all()
    idx = relevant.nonzero()[:, 1].view(N, k) + 1  # 1-based positions, in order
    for j, (lo, hi) in enumerate(POSITIONS[variant]):
        assert idx[:, j].min() == lo and idx[:, j].max() == hi
    # label: X=0 / Y=1 read as a binary number, first symbol most significant (XX→Q=0 … YY→U=3)
    bits = (symbols.gather(1, idx - 1) == 7).long()
    expected = (bits * (2 ** torch.arange(k - 1, -1, -1))).sum(1)
    assert torch.equal(batch.target, expected)
    assert torch.bincount(batch.target, minlength=2 ** k).min() > N / 2 ** k * 0.7


def test_temporal_order_6a_labels_by_hand():
    task = make_task("6a")
    batch = task.sample(64, gen(0))
    names = "QRSU"
    for b in range(64):
        seq = batch.x[b, : batch.lengths[b]].argmax(-1).tolist()
        order = "".join("XY"[s - 6] for s in seq if s >= 6)
        assert names[batch.target[b]] == {"XX": "Q", "XY": "R", "YX": "S", "YY": "U"}[order]


def test_reber_strings_are_in_the_grammar():
    g = gen(7)
    for _ in range(500):
        s = reber_string(g)
        assert REBER_RE.fullmatch(s), s
        e = embedded_reber_string(g)
        assert EMBEDDED_RE.fullmatch(e), e
        assert is_embedded_reber(e)
        assert e[1] == e[-2]


@pytest.mark.parametrize("bad", ["BTBTXXETE", "BTBTSSXSEPE", "BPBTXSETE", "BTBTSXSE", "BTBPVVETEE", "B", "BTBE"])
def test_grammar_checker_rejects(bad):
    assert not is_embedded_reber(bad)
    assert not EMBEDDED_RE.fullmatch(bad)


def test_reber_legal_next_by_hand():
    assert legal_next("BPBPTTVVEPE") == ["TP", "B", "TP", "TV", "TV", "TV", "PV", "E", "P", "E"]
    assert legal_next("BTBTXSETE") == ["TP", "B", "TP", "SX", "XS", "E", "T", "E"]


def test_reber_sets_and_encoding():
    task = EmbeddedReber()
    train, test = task.strings(0)
    assert len(train) == len(test) == 256 and not set(train) & set(test)
    batch = task.encode(train[:32])
    rows = torch.arange(32)
    # the target is always among the legal next symbols; padding is ignored
    t = batch.target.clamp(min=0)
    inside = batch.target != IGNORE
    assert batch.legal.gather(2, t.unsqueeze(-1)).squeeze(-1)[inside].all()
    assert torch.equal(inside, torch.arange(batch.x.shape[1])[None] < batch.lengths[:, None])
    # the long-lag step: after the inner E comes the outer letter again, and only it
    last = batch.lengths - 2
    assert (batch.legal[rows, last].sum(-1) == 1).all()
    outer = batch.x[:, 1].argmax(-1)
    assert torch.equal(batch.target[rows, last], outer)
    # the paper's fixed training set: every training batch is drawn from it
    drawn = EmbeddedReber(training="fixed").train_batch(3, 16, 0)
    encoded = {tuple(r[: int(n)].argmax(-1).tolist()) for r, n in zip(task.encode(train).x, task.encode(train).lengths)}
    assert all(tuple(r[: int(n)].argmax(-1).tolist()) in encoded for r, n in zip(drawn.x, drawn.lengths))


def decode(batch, b):
    """Row b of an encoded Reber batch back to its string (inputs, then the last target)."""
    n = int(batch.lengths[b])
    return "".join(SYMBOLS[i] for i in batch.x[b, :n].argmax(-1).tolist()) + SYMBOLS[int(batch.target[b, n - 1])]


def test_reber_batch_sampler_matches_the_string_walker():
    batch = sample_embedded_reber(N, gen(5))
    strings = [decode(batch, b) for b in range(N)]
    assert all(EMBEDDED_RE.fullmatch(s) for s in strings)
    # encoding the same strings one by one gives the same tensors (legal sets from legal_next)
    again = EmbeddedReber.encode(strings)
    for field in ("x", "lengths", "target", "legal"):
        assert torch.equal(getattr(batch, field), getattr(again, field)), field
    # every branch is taken with probability 0.5: the outer letter, and the mean length
    outer_t = sum(s[1] == "T" for s in strings) / N
    assert abs(outer_t - 0.5) < 4 * math.sqrt(0.25 / N)
    g = gen(9)
    walker = [embedded_reber_string(g) for _ in range(N)]  # the one-string-at-a-time generator
    assert abs(sum(map(len, strings)) / N - sum(map(len, walker)) / N) < 0.5


def test_reber_online_training_draws_fresh_strings():
    task = EmbeddedReber()
    assert task.training == "online"
    train = set(task.strings(0)[0])
    seen = {decode(b, r) for k in range(20) for b in [task.train_batch(k, 32, 0)] for r in range(32)}
    assert len(seen - train) > 100  # most of 640 online strings are outside the fixed 256
    with pytest.raises(ValueError, match="training must be one of"):
        EmbeddedReber(training="cached")


def test_long_lag_2a_sequences():
    task = make_task("long_lag", 10)
    batch = task.test_set(0)
    seqs = batch.x.argmax(-1)  # inputs: first p symbols
    assert seqs.tolist() == [[9] + list(range(9)), [10] + list(range(9))]  # x then a_1..a_9; y then …
    assert batch.target[:, -1].tolist() == [9, 10]  # last target repeats the first symbol
    assert torch.equal(batch.target[:, :-1], seqs[:, 1:])
    s = task.sample(N, gen(0))
    assert 0.45 < (s.x[:, 0].argmax(-1) == 10).float().mean() < 0.55


def test_copy_task_follows_arjovsky_4_1():
    T = 30
    batch = make_task("copy", T).sample(500, gen(0))
    inp = batch.x.argmax(-1)
    assert batch.x.shape == (500, T + 20, 10)
    memory = inp[:, :10]
    assert memory.min() == 1 and memory.max() == 8
    assert (inp[:, 10 : T + 9] == 0).all() and (inp[:, T + 9] == 9).all() and (inp[:, T + 10 :] == 0).all()
    assert (batch.target[:, : T + 10] == 0).all()
    assert torch.equal(batch.target[:, T + 10 :], memory)
    assert baseline(100) == pytest.approx(10 * math.log(8) / 120) and baseline(100) == pytest.approx(0.1733, abs=1e-4)


def test_copy_trains_on_mixed_delays_and_tests_at_T():
    task = make_task("copy", 30)
    delays = []
    for k in range(200):
        b = task.train_batch(k, 4, 0)
        d = b.x.shape[1] - 20
        delays.append(d)
        inp = b.x.argmax(-1)
        assert (inp[:, d + 9] == 9).all() and torch.equal(b.target[:, d + 10 :], inp[:, :10])
        assert (b.lengths == d + 20).all()
    assert min(delays) >= 1 and max(delays) <= 30 and len(set(delays)) > 20  # uniform over 1 … 30
    assert task.test_set(0).x.shape[1] == 50 and task.sample(3, gen(0)).x.shape[1] == 50  # held-out sets: delay T
    fixed = CopyTask(30, mixed_delays=False)
    assert all(fixed.train_batch(k, 4, 0).x.shape[1] == 50 for k in range(5))
    assert "delays 1–30" in task.describe() and "delays" not in fixed.describe()


def test_make_task_rejects_bad_names_and_lengths():
    with pytest.raises(ValueError, match="unknown task"):
        make_task("subtraction")
    with pytest.raises(ValueError, match="fixed length"):
        make_task("reber", 50)
    with pytest.raises(ValueError, match="even"):
        make_task("adding", 7).sample(1, gen(0))


@pytest.mark.parametrize("T", [6, 8, 11])
def test_adding_length_too_short_or_odd_is_one_clear_error(T):
    from lstmkit.paper1997.adding import AddingProblem

    with pytest.raises(ValueError, match=rf"T must be an even integer >= 10 .* got {T}"):
        AddingProblem(T).sample(4, torch.Generator().manual_seed(0))
