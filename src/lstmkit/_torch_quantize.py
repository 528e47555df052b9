"""torch.ao.quantization.quantize_dynamic on models holding lk.LSTM or lk.LSTMCell.

torch chooses what to quantize by exact type: ``propagate_qconfig_`` gives a module the qconfig
of ``qconfig_spec[type(m)]`` and ``convert`` swaps it for ``mapping[type(m)].from_float(m)``.
Left alone, ``quantize_dynamic(model, {nn.LSTM, nn.Linear})`` (or its default spec, which
names nn.LSTM and nn.LSTMCell) would return every lk.LSTM in float32 without a word. Two
hooks, installed only when a quantization run reaches an lstmkit module:

1. ``qconfig``: when propagate_qconfig_ gives an lk.LSTM no qconfig of its own, it takes the
   one the spec gives its torch counterpart (nn.LSTM; nn.LSTMCell for lk.LSTMCell), so asking
   for nn.LSTM quantizes the LSTMs that stand in for it. Naming lk.LSTM in the spec works too;
   a spec without either (``{nn.Linear}``) leaves it in float, as it would an nn.LSTM.
2. the dynamic quantization mapping gains lk.LSTM and lk.LSTMCell. Their ``from_float`` copies
   the weights into torch.nn.LSTM / LSTMCell (same state_dict names) and returns torch's own
   dynamically quantized module (torch.ao.nn.quantized.dynamic.LSTM / LSTMCell): the int8
   result is exactly what quantize_dynamic makes of the equivalent torch.nn.LSTM, same kernel
   and same error. A configuration that module cannot compute (peephole, coupled, LayerNorm,
   zoneout, proj_size) raises one ValueError naming it, instead of being quantized wrong.

The quantized module is torch's: nn.LSTM's forward contract (input, hx), PackedSequence
included, without lstmkit's keyword options (lengths=, return_gates=). A ``mapping=`` passed to
quantize_dynamic by hand must name lk.LSTM itself (``{lk.LSTM: DynamicQuantizedLSTM, ...}``).
quantize_dynamic swaps submodules only: an lk.LSTM passed as the model itself stays in float, as
a bare torch.nn.LSTM does, but here with a warning saying so.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any, Optional

from torch import nn

# How many frames up from the qconfig setter propagate_qconfig_'s helper may be (it assigns
# module.qconfig directly: setter <- nn.Module.__setattr__ <- _propagate_qconfig_helper).
_FRAMES_TO_SEARCH = 4


def _propagation(frame) -> Optional[tuple[dict, str]]:
    """(qconfig_spec, this module's name) when torch's propagate_qconfig_ is assigning the qconfig.

    Read from the caller's frames: torch has no hook between the spec and the modules, and the
    spec lives only there.
    """
    for _ in range(_FRAMES_TO_SEARCH):
        if frame is None:
            return None
        if frame.f_code.co_name == "_propagate_qconfig_helper":
            spec, prefix = frame.f_locals.get("qconfig_dict"), frame.f_locals.get("prefix")
            return (spec, prefix) if isinstance(spec, dict) and isinstance(prefix, str) else None
        frame = frame.f_back
    return None


def _counterpart_qconfig(module: nn.Module, spec: dict, prefix: str, counterpart: type) -> Optional[Any]:
    """The qconfig spec gives counterpart, for a module that got none; a name entry (even None) wins, as in torch."""
    if prefix in spec or counterpart not in spec:
        return None
    from torch.ao.quantization.qconfig import _add_module_to_qconfig_obs_ctr

    return _add_module_to_qconfig_obs_ctr(spec[counterpart], module)


class DynamicQuantizable:
    """Mixin: quantize_dynamic treats the module as its torch counterpart (see module docstring).

    The host class sets ``_torch_counterpart`` (nn.LSTM or nn.LSTMCell).
    """

    _torch_counterpart: type = nn.Module

    @property
    def qconfig(self) -> Any:
        try:
            return self.__dict__["_qconfig"]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'qconfig'") from None

    @qconfig.setter
    def qconfig(self, value: Any) -> None:
        propagation = _propagation(sys._getframe(1))
        if propagation is not None:
            spec, prefix = propagation
            if value is None:
                value = _counterpart_qconfig(self, spec, prefix, self._torch_counterpart)
            if value is not None and prefix == "":
                warnings.warn(
                    f"quantize_dynamic swaps submodules only, so the lk.{type(self).__name__} passed as the model "
                    f"itself stays in float (a bare torch.nn.{self._torch_counterpart.__name__} does too); "
                    "quantize a module that holds it", stacklevel=4,
                )
        if value is not None:
            _register_mappings()
        self.__dict__["_qconfig"] = value

    @qconfig.deleter
    def qconfig(self) -> None:
        self.__dict__.pop("_qconfig", None)

    def _quantization_blocker(self) -> Optional[str]:
        """What torch's quantized counterpart cannot compute in this module's eval mode, or None."""
        found = [f"proj_size (proj_size={self.proj_size})"] if getattr(self, "proj_size", 0) else []
        if getattr(self, "peephole", False) or getattr(self, "weight_peephole", None) is not None:
            found.append("peephole")
        found += [name for name in ("coupled", "layer_norm") if getattr(self, name, False)]
        if getattr(self, "zoneout_c", 0) or getattr(self, "zoneout_h", 0):
            found.append("zoneout")
        return " and ".join(found) or None


def _to_torch_float(mod: nn.Module, counterpart: type, config: dict) -> nn.Module:
    reason = mod._quantization_blocker()
    if reason is not None:
        raise ValueError(
            f"quantize_dynamic cannot quantize this lk.{type(mod).__name__}: torch's dynamically quantized "
            f"{counterpart.__name__} has no {reason}. Leave it in float (quantize_dynamic(model, {{nn.Linear}})), "
            "or export it (lstmkit.export_onnx) and quantize the file (lstmkit.interop.quantize_onnx)"
        )
    w = next(mod.parameters())
    twin = counterpart(**config, device=w.device, dtype=w.dtype)
    twin.load_state_dict(mod.state_dict())
    twin.qconfig = mod.qconfig
    return twin


_CONFIG_LSTM = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional")


def _dynamic_classes() -> tuple[type, type]:
    import torch.ao.nn.quantized.dynamic as nnqd

    class DynamicQuantizedLSTM(nnqd.LSTM):
        """torch's dynamically quantized LSTM, made from an lk.LSTM's weights."""

        @classmethod
        def from_float(cls, mod, use_precomputed_fake_quant=False):
            twin = _to_torch_float(mod, nn.LSTM, {k: getattr(mod, k) for k in _CONFIG_LSTM})
            return nnqd.LSTM.from_float(twin)

    class DynamicQuantizedLSTMCell(nnqd.LSTMCell):
        """torch's dynamically quantized LSTMCell, made from an lk.LSTMCell's weights."""

        @classmethod
        def from_float(cls, mod, use_precomputed_fake_quant=False):
            twin = _to_torch_float(mod, nn.LSTMCell, {k: getattr(mod, k) for k in ("input_size", "hidden_size", "bias")})
            return nnqd.LSTMCell.from_float(twin)

    return DynamicQuantizedLSTM, DynamicQuantizedLSTMCell


_registered = False


def _register_mappings() -> None:
    """Add lk.LSTM and lk.LSTMCell to torch's default dynamic quantization mapping (once)."""
    global _registered
    if _registered:
        return
    from torch.ao.quantization.quantization_mappings import get_default_dynamic_quant_module_mappings

    from .cell import LSTMCell
    from .lstm import LSTM

    lstm_q, cell_q = _dynamic_classes()
    mapping = get_default_dynamic_quant_module_mappings()  # torch's own dict, read by quantize_dynamic
    mapping.setdefault(LSTM, lstm_q)
    mapping.setdefault(LSTMCell, cell_q)
    _registered = True
