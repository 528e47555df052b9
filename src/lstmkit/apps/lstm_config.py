"""The ``[lstm]`` section every application's config shares: lk.LSTM's variants, by one set of names.

    task = "text"
    hidden_size = 256
    [lstm]
    layer_norm = true
    zoneout = [0.1, 0.05]      # (z_c, z_h); a single number sets both
    proj_size = 128

On the command line: ``--lstm.peephole true``. The fields are LSTMOptions' (forget_bias,
peephole, coupled, layer_norm, layer_norm_eps, zoneout, recurrent_dropout, input_dropout,
weight_drop; what each does is in lk.LSTM's docstring), checked by LSTMOptions itself, plus
``proj_size`` (torch.nn.LSTM's projection of h). The network's shape (hidden_size, num_layers,
bidirectional, the app's own dropout) stays with the app's keys, since each app wires it
differently.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Union

from ..options import LSTMOptions
from ..train.config import ConfigError


@dataclass(frozen=True)
class LSTMConfig(LSTMOptions):
    """LSTMOptions plus ``proj_size``, as a config section (every field has a default)."""

    zoneout: Union[float, tuple[float, float]] = 0.0  # a config may give one number; stored as the pair
    proj_size: int = 0

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except ValueError as e:
            raise ConfigError(f"lstm: {e}") from None
        p = self.proj_size
        if isinstance(p, bool) or not isinstance(p, int) or p < 0:
            raise ConfigError(f"lstm: proj_size must be an integer >= 0 (0: no projection), got {p!r}")

    def check_hidden_size(self, hidden_size: int, app: str) -> None:
        """One line if the projection does not fit the app's hidden_size (lk.LSTM needs proj_size < hidden_size)."""
        if self.proj_size >= hidden_size:
            raise ConfigError(f"{app}: lstm.proj_size must be smaller than hidden_size={hidden_size}, "
                              f"got {self.proj_size}")

    def output_size(self, hidden_size: int) -> int:
        """Size of h (per direction): proj_size when projecting, else hidden_size."""
        return self.proj_size or hidden_size

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of lk.LSTM that differ from its defaults (so a plain section adds none)."""
        default = _DEFAULT
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    @classmethod
    def legacy_keys(cls, *names: str) -> dict[str, str]:
        """{old top-level key: "lstm.<key>"} for an app whose configs once held variants at the top level."""
        unknown = [n for n in names if n not in {f.name for f in fields(cls)}]
        if unknown:
            raise ValueError(f"not LSTMConfig fields: {unknown}")
        return {n: f"lstm.{n}" for n in names}


_DEFAULT = LSTMConfig()
