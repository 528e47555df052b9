"""benchmarks/kernel_ab.py: each switch's A/B runs, prints both modes, and leaves the switch on."""
from __future__ import annotations

import pytest
import torch

from conftest import load_benchmark
from test_fused import _require_kernel


@pytest.fixture(scope="module")
def script():
    return load_benchmark("kernel_ab")


def test_one_repeat_prints_both_modes_and_leaves_auto(script, capsys):
    ext = _require_kernel()
    threads = torch.get_num_threads()
    try:
        assert script.main(["--shapes", "S8", "--repeats", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "S8 train" in out and "S8 inference" in out and " off " in out and " on " in out
    before = ext.concurrent_runs()
    with torch.no_grad():  # the knob is back on auto: a bidirectional stack at two threads runs concurrently
        torch.set_num_threads(2)
        try:
            import lstmkit as lk
            lk.LSTM(4, 8, 1, bidirectional=True).eval()(torch.randn(5, 4, 4))
        finally:
            torch.set_num_threads(threads)
    assert ext.concurrent_runs() > before


def test_the_avx512_switch_runs_in_cpu_time(script, capsys):
    _require_kernel()
    threads = torch.get_num_threads()
    try:
        assert script.main(["--knob", "avx512", "--shapes", "S3", "--repeats", "1", "--threads", "1",
                            "--clock", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "avx512: threads 1, cpu clock" in capsys.readouterr().out


@pytest.mark.parametrize("knob", ["fused_projection", "row_split"])
def test_the_projection_and_row_switches_run_and_return_to_auto(script, capsys, knob):
    ext = _require_kernel()
    threads = torch.get_num_threads()
    try:
        assert script.main(["--knob", knob, "--shapes", "S3", "--repeats", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert f"{knob}: threads 2" in capsys.readouterr().out
    if knob == "row_split":  # back on auto: 16 rows at two threads give each thread its own rows
        before = ext.row_split_runs()
        torch.set_num_threads(2)
        try:
            with torch.no_grad():
                import lstmkit as lk
                lk.LSTM(8, 16).eval()(torch.randn(3, 16, 8))
        finally:
            torch.set_num_threads(threads)
        assert ext.row_split_runs() > before


@pytest.mark.parametrize("argv,message", [
    (["--shapes", "S9"], "--shapes takes S1, S2, S3, S4, S5, S6, S7, S8; got S9"),
    (["--clock", "cpu"], "--clock cpu times one thread, so it needs --threads 1, got --threads 2"),
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),
])
def test_bad_arguments_are_refused(script, capsys, argv, message):
    with pytest.raises(SystemExit):
        script.main(argv)
    assert message in capsys.readouterr().err
