"""Shared test helpers. Tolerances live here, once, with the reason for each."""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

# float64: both sides run the same maths in double; differences are summation order only.
# float32: torch.nn.LSTM runs oneDNN kernels with their own GEMM blocking and fused gate
# arithmetic, so single-precision rounding differs by a few ulps per step, compounding over steps.
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
}


def assert_close(actual, expected, dtype=None, what=""):
    dtype = dtype or expected.dtype
    torch.testing.assert_close(actual, expected, **TOLERANCES[dtype], msg=lambda m: f"{what}: {m}")


def grads(outputs, inputs):
    """Gradients of a fixed random projection of outputs w.r.t. each of inputs (None → zeros)."""
    gen = torch.Generator().manual_seed(1234)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    gs = torch.autograd.grad(loss, inputs, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(i) if g is None else g for g, i in zip(gs, inputs)]


@pytest.fixture(autouse=True)
def one_thread():
    """Every test runs with one intra-op thread: the tensors here are tiny, and on a busy 2-core
    machine OpenMP hand-offs between two threads stall every op (seen: 100× slower). Tests about
    thread counts set their own."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_benchmark(name: str):
    """benchmarks/NAME.py imported as a module (the scripts are not a package), for their tests."""
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
