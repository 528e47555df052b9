"""benchmarks/xlstm_parity.py: its parity batches are right, and a tiny run of every model writes its table."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import load_benchmark


@pytest.fixture(scope="module")
def script():
    return load_benchmark("xlstm_parity")


def test_parity_batches(script):
    x, lengths, y = script.parity_batch(50, 3, 9, torch.Generator().manual_seed(0))
    assert x.shape[0] == 50 and x.shape[2] == 2 and int(lengths.min()) >= 3 and int(lengths.max()) <= 9
    for b in range(50):
        L = int(lengths[b])
        assert (x[b, :L].sum(-1) == 1).all() and (x[b, L:] == 0).all()  # one-hot bits, zero padding
        assert int(y[b, L - 1]) == int(x[b, :L, 1].sum()) % 2 and (y[b, L:] == -100).all()
        assert all(int(y[b, t]) == int(x[b, : t + 1, 1].sum()) % 2 for t in range(L))


def test_tiny_run_writes_json_and_markdown(script, tmp_path):
    out = tmp_path / "parity.json"
    assert script.main(["--steps", "2", "--batch", "8", "--hidden", "8", "--heads", "2", "--test", "256",
                        "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["rnn", "lstm", "slstm", "mlstm"]
    assert all(0 <= r["acc_test_40_256"] <= 1 for r in rows)
    assert out.with_suffix(".md").read_text().count("\n| ") == 5  # header + 4 rows


def test_curriculum_grows_the_longest_training_length(script):
    assert [script.curriculum_max_length(s, 100) for s in (0, 50, 99, 100, 500)] == [4, 22, 39, 40, 40]
    assert script.curriculum_max_length(0, 0) == 40  # no curriculum: the full range from the start
