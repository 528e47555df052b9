"""Whether a forward call can read tensor values, or is being traced for its shapes.

torch.compile, torch.export, AOTInductor, FakeTensors, meta tensors, torch.func transforms and
torch.jit.trace all run lstmkit's Python with tensors whose values are unknown (or must not be
baked into a trace). There the forward path takes no data-dependent branch: value checks (finite
input, length ranges) and the eager-only caches are skipped, and what must still be checked is
checked inside the operators, which run wherever the graph runs.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor


def values_hidden(t: Optional[Tensor] = None) -> bool:
    """True when the call is traced (or t has no values): read no tensor data, branch on none."""
    # cheapest first: this runs a few times in every eager forward, one-step decoding included
    if torch.compiler.is_compiling() or _jit_tracing() or _functorch_active() or torch.compiler.is_exporting():
        return True
    return t is not None and (isinstance(t, FakeTensor) or t.is_meta)


_jit_tracing = torch._C._is_tracing  # torch.jit.is_tracing without its scripting check
_functorch_active = torch._C._are_functorch_transforms_active
