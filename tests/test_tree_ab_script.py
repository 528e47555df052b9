"""benchmarks/tree_ab.py: times a shape in two trees, alternating, and prints both and the ratio."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import load_benchmark
from test_fused import _require_kernel

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def script():
    return load_benchmark("tree_ab")


def test_the_same_tree_twice_prints_both_sides_and_a_ratio(script, capsys):
    """The repository against itself, on the kernel this process already built (one extension
    directory for both sides, which share their sources): one round of one call at S8."""
    _require_kernel()
    ext = os.environ.get("TORCH_EXTENSIONS_DIR") or script.extension_dir(ROOT)
    assert script.main([str(ROOT), str(ROOT), "--shapes", "S8", "--modes", "inference", "--rounds", "1",
                        "--repeats", "1", "--ext-dirs", f"{ext},{ext}"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("S8 inference")][0]
    a_ms, b_ms, ratio = float(line.split()[3]), float(line.split()[6]), float(line.split()[-1])
    assert a_ms > 0 and b_ms > 0 and ratio == pytest.approx(a_ms / b_ms, rel=1e-2)


def test_bad_arguments_say_what_was_expected(script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        script.main([str(ROOT), str(tmp_path)])
    assert "has no src/lstmkit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(ROOT), str(ROOT), "--shapes", "S9"])
    assert "unknown S9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(ROOT), str(ROOT), "--threads", "2"])
    assert "--clock cpu times the calling thread only" in capsys.readouterr().err
