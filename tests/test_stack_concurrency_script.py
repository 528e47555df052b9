"""benchmarks/stack_concurrency.py: the concurrency A/B runs, prints both modes, restores the knob."""
from __future__ import annotations

import pytest
import torch

from conftest import load_benchmark
from test_fused import _require_kernel


@pytest.fixture(scope="module")
def script():
    return load_benchmark("stack_concurrency")


def test_one_repeat_prints_both_modes_and_leaves_auto(script, capsys):
    ext = _require_kernel()
    threads = torch.get_num_threads()
    try:
        assert script.main(["--shapes", "S8", "--repeats", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "S8 train" in out and "S8 inference" in out and "in order" in out and "concurrent" in out
    before = ext.concurrent_runs()
    with torch.no_grad():  # the knob is back on auto: a bidirectional stack at two threads runs concurrently
        torch.set_num_threads(2)
        try:
            import lstmkit as lk
            lk.LSTM(4, 8, 1, bidirectional=True).eval()(torch.randn(5, 4, 4))
        finally:
            torch.set_num_threads(threads)
    assert ext.concurrent_runs() > before


def test_bad_arguments_are_refused(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--shapes", "S9"])
    assert "--shapes takes S6, S7, S8; got S9" in capsys.readouterr().err
