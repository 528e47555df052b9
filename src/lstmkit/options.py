"""LSTMOptions: the LSTM's variants beyond torch.nn.LSTM, validated once, in one place.

lk.LSTM and lk.LSTMCell both take these keyword arguments and hand them here; what each variant
does, with its equation and its parameters' names, is in lk.LSTM's docstring. A variant added
here is one field, one validation line, and (if it has parameters) one entry in
``extra_param_shapes``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from . import _checks as check

DEFAULT_FORGET_BIAS = 1.0


@dataclass(frozen=True)
class LSTMOptions:
    """The variants of one LSTM (all off by default). ``zoneout`` is the pair (z_c, z_h)."""

    forget_bias: Optional[float] = DEFAULT_FORGET_BIAS
    peephole: bool = False
    coupled: bool = False
    layer_norm: bool = False
    layer_norm_eps: float = 1e-5
    zoneout: tuple[float, float] = (0.0, 0.0)
    recurrent_dropout: float = 0.0
    input_dropout: float = 0.0
    weight_drop: float = 0.0

    def __post_init__(self) -> None:
        fb = self.forget_bias
        if fb is not None and (isinstance(fb, bool) or not isinstance(fb, (int, float))):
            raise ValueError(f"forget_bias must be a number or None, got {fb!r}")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"layer_norm_eps must be a positive number, got {eps!r}")
        z = self.zoneout
        pair = tuple(z) if isinstance(z, (tuple, list)) else (z, z)
        if len(pair) != 2:
            raise ValueError(f"zoneout must be a probability or a pair (z_c, z_h), got {z!r}")
        pair = (check.probability("zoneout (cell)", pair[0]), check.probability("zoneout (hidden)", pair[1]))
        values = dict(
            forget_bias=None if fb is None else float(fb), peephole=bool(self.peephole), coupled=bool(self.coupled),
            layer_norm=bool(self.layer_norm), layer_norm_eps=float(eps), zoneout=pair,
        )
        for name in ("recurrent_dropout", "input_dropout", "weight_drop"):
            p = check.probability(name, getattr(self, name))
            if p == 1.0:
                raise ValueError(f"{name} must be below 1 (it rescales by 1/(1-p)), got 1.0")
            values[name] = p
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def gates(self) -> int:
        """Gate blocks per hidden unit: 4 (i, f, g, o), or 3 (i, g, o) when coupled."""
        return 3 if self.coupled else 4

    def active(self, training: bool) -> tuple[str, ...]:
        """The variants that change this call's computation (backends lacking one are not chosen)."""
        on = {
            "peephole": self.peephole,
            "coupled": self.coupled,
            "layer_norm": self.layer_norm,
            "zoneout": self.zoneout != (0.0, 0.0),
            "recurrent_dropout": self.recurrent_dropout > 0 and training,
            "input_dropout": self.input_dropout > 0 and training,
        }
        return tuple(name for name, flag in on.items() if flag)

    def extra_param_shapes(self, hidden_size: int, suffix: str = "") -> dict[str, tuple[int, ...]]:
        """The variants' parameters of one layer and direction, by name (with ``suffix``)."""
        H, GH = hidden_size, self.gates * hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        if self.peephole:
            shapes[f"weight_peephole{suffix}"] = (self.gates - 1, H)
        if self.layer_norm:
            for part, n in (("ih", GH), ("hh", GH), ("c", H)):
                shapes[f"ln_{part}_weight{suffix}"] = (n,)
                shapes[f"ln_{part}_bias{suffix}"] = (n,)
        return shapes

    def initial_value(self, name: str, hidden_size: int):
        """What reset_parameters writes over the uniform draw of parameter ``name`` (no suffix):
        (rows, value) or None. LayerNorm gains start at 1 and biases at 0; with forget_bias, the
        forget gate's rows of bias_ih start at it and bias_hh's at 0 (coupled has no f: i's rows
        at -forget_bias, so f = 1 - i starts at σ(forget_bias))."""
        if name.startswith("ln_"):
            return slice(None), 1.0 if "_weight" in name else 0.0
        if self.forget_bias is not None and name in ("bias_ih", "bias_hh"):
            H = hidden_size
            rows = slice(0, H) if self.coupled else slice(H, 2 * H)
            value = -self.forget_bias if self.coupled else self.forget_bias
            return rows, value if name == "bias_ih" else 0.0
        return None


class OptionAttributes:
    """The options of ``self.options`` as read-only attributes (``lstm.peephole``, ``lstm.zoneout_h`` …),
    as torch.nn.LSTM exposes its own constructor arguments."""

    options: LSTMOptions
    forget_bias = property(lambda self: self.options.forget_bias)
    peephole = property(lambda self: self.options.peephole)
    coupled = property(lambda self: self.options.coupled)
    layer_norm = property(lambda self: self.options.layer_norm)
    layer_norm_eps = property(lambda self: self.options.layer_norm_eps)
    zoneout = property(lambda self: self.options.zoneout, doc="(z_c, z_h)")
    zoneout_c = property(lambda self: self.options.zoneout[0])
    zoneout_h = property(lambda self: self.options.zoneout[1])
    recurrent_dropout = property(lambda self: self.options.recurrent_dropout)
    input_dropout = property(lambda self: self.options.input_dropout)
    weight_drop = property(lambda self: self.options.weight_drop)
