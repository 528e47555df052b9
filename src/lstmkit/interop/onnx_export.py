"""Export an lk.LSTM to ONNX, written node by node with ``onnx.helper`` (no tracing).

Two routes, chosen per model by ``export_route`` (EXPORT_SUPPORT is the table):

- "native": one ONNX ``LSTM`` operator per layer (both directions in one node), layers chained
  through a Transpose + Reshape. Runtimes run it with their own fused LSTM kernels.
- "scan": a decomposition: per layer and direction, the input projection of all steps as one
  MatMul, then a ``Scan`` whose body is one step of the equations in lstmkit's notation. It
  handles what the LSTM operator cannot express: the projection h = W_hr (o ⊙ tanh c) fed back
  into the recurrence, and the variants coupled (f = 1 − i), LayerNorm (LayerNormalization nodes
  in and around the step) and zoneout (its eval-mode expectation, a fixed interpolation).

Peephole maps onto the LSTM operator's own P input; the scan body has it too, for peephole
models that also need the scan route.

The ONNX LSTM operator, against torch's layout (per layer; D directions, H hidden)::

    gate order   ONNX i, o, f, c          torch i, f, g, o        (c is the input node, our g)
    W  [D, 4H, I]      ← weight_ih rows reordered            (_reverse for index 1 of D)
    R  [D, 4H, H]      ← weight_hh rows reordered
    B  [D, 8H] = Wb ‖ Rb ← bias_ih ‖ bias_hh, each reordered
    Y  [T, D, B, H]  → Transpose(0, 2, 1, 3), Reshape → [T, B, D·H]: torch's output layout
    Y_h, Y_c [D, B, H] → concatenated over layers → [L·D, B, H]: torch's (h_n, c_n)

Graph signature (dims named T and B are dynamic)::

    inputs   input  [T, B, I] ([B, T, I] with batch_first), float32
             h0 [L·D, B, P], c0 [L·D, B, H]   (with initial_state=True; otherwise zeros)
             lengths [B] int64                (with lengths=True; right-padded batches)
    outputs  output [T, B, D·P] ([B, T, D·P] with batch_first), h_n [L·D, B, P], c_n [L·D, B, H]

With lengths, outputs past a sequence's length are zero, and h_n / c_n are each sequence's own
last step — lk.LSTM's contract. Weights are exported as float32. The graph computes the model in
eval mode (as torch.onnx.export does): recurrent / input dropout and weight_drop are training-time
operations and are left out; zoneout becomes its expectation h = z_h·h_{t-1} + (1 − z_h)·h̃_t (and c).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .._recurrent import evaluating
from ..lstm import LSTM
from ..xlstm import mLSTM, sLSTM

DEFAULT_OPSET = 17

# What exports, and how. Keys are features of an lk.LSTM; values are the route and a note.
# Variants (a later issue) are listed with their planned mapping; until their module option
# exists, export_route refuses a model that uses one, by name, instead of exporting it wrong.
EXPORT_SUPPORT: dict[str, tuple[str, str]] = {
    "plain (1 layer)": ("native", "one ONNX LSTM node"),
    "num_layers > 1": ("native", "chained LSTM nodes, Transpose + Reshape between"),
    "bidirectional": ("native", "direction='bidirectional' in each node"),
    "bias=False": ("native", "the B input is left out (ONNX: zeros)"),
    "batch_first": ("native", "Transpose at the input and the output"),
    "lengths": ("native", "sequence_lens input (int64 lengths cast to int32)"),
    "initial state": ("native", "initial_h / initial_c inputs, sliced per layer"),
    "proj_size > 0": ("scan", "the projected h feeds the recurrence: not expressible by the LSTM operator"),
    "peephole": ("native", "the LSTM operator's P input [D, 3H] (order i, o, f); also in the scan body"),
    "coupled": ("scan", "f = 1 - i in the step body (ONNX's input_forget is not implemented by every runtime)"),
    "layer_norm": ("scan", "LayerNormalization on x·W_ih^T, h·W_hh^T and c (needs opset >= 17)"),
    "zoneout": ("scan", "eval-mode expectation: h = z_h·h_prev + (1 - z_h)·h_new, likewise c"),
    "recurrent_dropout / input_dropout / weight_drop": ("native", "training only: not in the exported graph (eval mode)"),
    "lk.sLSTM / lk.mLSTM": ("scan", "no ONNX operator for either cell: a Scan over one stabilized step "
                                    "(lstmkit.interop.onnx_xlstm), with heads, layers, directions, lengths"),
}

# Variant name (as lk.LSTM._variants() reports it in eval mode) -> the route that can export it:
# "native" variants export by either route, "scan" ones need the scan route.
_VARIANT_ROUTES: dict[str, str] = {"peephole": "native", "coupled": "scan", "layer_norm": "scan", "zoneout": "scan"}
_LAYER_NORM_OPSET = 17  # LayerNormalization entered the default domain in opset 17

# torch's gate blocks (i, f, g, o) taken in ONNX's order (i, o, f, c).
_ONNX_GATE_ORDER = (0, 3, 1, 2)


class ExportError(ValueError):
    """The model cannot be exported as asked; the message says which feature and why."""


def export_route(model: LSTM, method: str = "auto") -> str:
    """"native" or "scan": how export_onnx would export model (ExportError if it cannot).

    The model is judged as it runs in eval mode (training-only dropouts are not exported).
    lk.sLSTM and lk.mLSTM always take the scan route.
    """
    if method not in ("auto", "native", "scan"):
        raise ExportError(f"method must be 'auto', 'native' or 'scan', got {method!r}")
    if isinstance(model, (sLSTM, mLSTM)):
        if method == "native":
            raise ExportError(f"lk.{type(model).__name__} cannot use the ONNX LSTM operator "
                              f"({EXPORT_SUPPORT['lk.sLSTM / lk.mLSTM'][1]}); use method='scan' or 'auto'")
        return "scan"
    reasons = [f"proj_size={model.proj_size}"] if model.proj_size else []
    for v in _eval_variants(model):
        route = _VARIANT_ROUTES.get(v)
        if route is None:
            raise ExportError(f"lk.LSTM with {v} is not exportable to ONNX (exportable: {', '.join(_VARIANT_ROUTES)})")
        if route == "scan":
            reasons.append(v)
    if method == "native" and reasons:
        raise ExportError(f"{' and '.join(reasons)} cannot use the ONNX LSTM operator "
                          f"({'; '.join(_support_note(r) for r in reasons)}); use method='scan' or 'auto'")
    if method != "auto":
        return method
    return "scan" if reasons else "native"


def _eval_variants(model: LSTM) -> tuple[str, ...]:
    with evaluating(model):
        return model._variants()


def _support_note(reason: str) -> str:
    key = "proj_size > 0" if reason.startswith("proj_size") else reason
    return EXPORT_SUPPORT[key][1]


# --------------------------------------------------------------------------- graph building


@dataclass
class _Graph:
    """Nodes and initializers of one (sub)graph, with unique names."""

    prefix: str = ""
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    count: int = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def const(self, hint: str, value: Any, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        value = np.array(value, dtype=dtype, order="C")  # np.array keeps a scalar 0-d (ascontiguousarray would not)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, hint: str = "", **attrs: Any) -> Any:
        from onnx import helper

        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs


def _np(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if t is None else t.detach().cpu().to(torch.float32).numpy()


def _onnx_gates(w: np.ndarray) -> np.ndarray:
    """Rows (or entries) in torch's gate order i, f, g, o → ONNX's i, o, f, c."""
    blocks = np.split(w, 4, axis=0)  # 4 × (H, ·)
    return np.concatenate([blocks[j] for j in _ONNX_GATE_ORDER], axis=0)


def _native_layer(g: _Graph, x: str, params: list, H: int, h0: Optional[str], c0: Optional[str], seq_lens: Optional[str]):
    """One ONNX LSTM node for a layer (all its directions): (out [T,B,D·H], Y_h [D,B,H], Y_c [D,B,H])."""
    D = len(params)
    W = np.stack([_onnx_gates(_np(p.w_ih)) for p in params])  # [D, 4H, I]
    R = np.stack([_onnx_gates(_np(p.w_hh)) for p in params])  # [D, 4H, H]
    inputs = [x, g.const("W", W), g.const("R", R)]
    if params[0].b_ih is not None:
        B = np.stack([np.concatenate([_onnx_gates(_np(p.b_ih)), _onnx_gates(_np(p.b_hh))]) for p in params])  # [D, 8H]
        inputs.append(g.const("B", B))
    else:
        inputs.append("")
    inputs += [seq_lens or "", h0 or "", c0 or ""]
    if params[0].peephole is not None:  # P [D, 3H]: ours are rows i, f, o; ONNX wants i, o, f
        inputs.append(g.const("P", np.stack([_np(p.peephole)[[0, 2, 1]].reshape(-1) for p in params])))
    while inputs and inputs[-1] == "":
        inputs.pop()
    y, y_h, y_c = g.op("LSTM", inputs, n_out=3, hint="lstm", hidden_size=H,
                       direction="bidirectional" if D == 2 else "forward")
    y = g.op("Transpose", [y], perm=[0, 2, 1, 3])  # [T, D, B, H] -> [T, B, D, H]
    out = g.op("Reshape", [y, g.const("shape", [0, 0, -1], np.int64)], hint="out")  # -> [T, B, D·H]
    return out, y_h, y_c


@dataclass(frozen=True)
class _StepVariants:
    """What the scan body does beyond the plain equations (from the model, in eval mode)."""

    coupled: bool = False
    eps: float = 1e-5  # LayerNorm epsilon
    zone_h: float = 0.0  # zoneout rates: eval mode uses the expectation of the mask
    zone_c: float = 0.0


def _scan_body(params, H: int, P: int, reverse: bool, masked: bool, var: _StepVariants):
    """One step of the equations as a Scan body: (h, c, xw_t[, m_t]) -> (h, c, y_t).

    xw_t is this step's input projection with both biases folded in (LayerNorm'd already when
    the layer has LayerNorm: see _scan_layer), so the body adds the recurrent term only.
    """
    from onnx import TensorProto, helper

    b = _Graph(prefix="body_")
    hh = b.op("MatMul", ["h_prev", b.const("R_t", _np(params.w_hh).T)], hint="hh")  # (B, GH)
    if params.ln is not None:  # LN(h W_hh^T) with its own gain and bias
        hh = b.op("LayerNormalization", [hh, b.const("ln_hh_w", _np(params.ln.hh_weight)),
                                         b.const("ln_hh_b", _np(params.ln.hh_bias))], hint="hh_ln", axis=-1, epsilon=var.eps)
    pre = b.op("Add", ["xw_t", hh], hint="pre")  # (B, GH)
    G = 3 if var.coupled else 4
    parts = b.op("Split", [pre, b.const("split", [H] * G, np.int64)], n_out=G, hint="gate", axis=1)
    i, f, gg, o = (parts[0], None, parts[1], parts[2]) if var.coupled else parts
    peep = _np(params.peephole)  # (3, H) rows i, f, o, or (2, H) rows i, o when coupled
    if peep is not None:  # i and f see c_{t-1}
        i = b.op("Add", [i, b.op("Mul", [b.const("p_i", peep[0]), "c_prev"])], hint="i_peep")
        if f is not None:
            f = b.op("Add", [f, b.op("Mul", [b.const("p_f", peep[1]), "c_prev"])], hint="f_peep")
    i = b.op("Sigmoid", [i], hint="i")
    f = b.op("Sub", [b.const("one", 1.0), i], hint="f") if f is None else b.op("Sigmoid", [f], hint="f")  # coupled: f = 1 - i
    gg = b.op("Tanh", [gg], hint="g")  # input node (candidate cell value)
    c = b.op("Add", [b.op("Mul", [f, "c_prev"]), b.op("Mul", [i, gg])], hint="c")  # c = f ⊙ c_prev + i ⊙ g
    if peep is not None:  # o sees c_t
        o = b.op("Add", [o, b.op("Mul", [b.const("p_o", peep[-1]), c])], hint="o_peep")
    o = b.op("Sigmoid", [o], hint="o")
    c_out = c
    if params.ln is not None:  # the cell is normalized before its tanh; the carried c is not
        c_out = b.op("LayerNormalization", [c, b.const("ln_c_w", _np(params.ln.c_weight)),
                                            b.const("ln_c_b", _np(params.ln.c_bias))], hint="c_ln", axis=-1, epsilon=var.eps)
    h = b.op("Mul", [o, b.op("Tanh", [c_out])], hint="h")  # h = o ⊙ tanh(c)
    if params.w_hr is not None:
        h = b.op("MatMul", [h, b.const("Whr_t", _np(params.w_hr).T)], hint="h_proj")  # (B, H) -> (B, P)
    for name, z, prev in (("h", var.zone_h, "h_prev"), ("c", var.zone_c, "c_prev")):
        if z:  # zoneout's expectation: z·prev + (1 - z)·new = new + z·(prev - new)
            new = h if name == "h" else c
            zoned = b.op("Add", [new, b.op("Mul", [b.const(f"z_{name}", z), b.op("Sub", [prev, new])])], hint=f"{name}_zone")
            h, c = (zoned, c) if name == "h" else (h, zoned)
    if masked:  # finished sequences keep their state and output zeros
        c = b.op("Where", ["m_t", c, "c_prev"], hint="c_kept")
        y = b.op("Where", ["m_t", h, b.const("zero", 0.0)], hint="y")
        h = b.op("Where", ["m_t", h, "h_prev"], hint="h_kept")
    else:
        y = b.op("Identity", [h], hint="y")
    b.nodes.append(helper.make_node("Identity", [h], ["h_out"]))
    b.nodes.append(helper.make_node("Identity", [c], ["c_out"]))
    b.nodes.append(helper.make_node("Identity", [y], ["y_out"]))
    f32 = TensorProto.FLOAT
    ins = [helper.make_tensor_value_info("h_prev", f32, None), helper.make_tensor_value_info("c_prev", f32, None),
           helper.make_tensor_value_info("xw_t", f32, None)]
    if masked:
        ins.append(helper.make_tensor_value_info("m_t", TensorProto.BOOL, None))
    outs = [helper.make_tensor_value_info(n, f32, None) for n in ("h_out", "c_out", "y_out")]
    return helper.make_graph(b.nodes, f"lstm_step{'_reverse' if reverse else ''}", ins, outs, initializer=b.inits)


def _scan_layer(g: _Graph, x: str, params: list, H: int, P: int, h0s: list[str], c0s: list[str], mask: Optional[str],
                var: _StepVariants):
    """Per direction, one MatMul for the inputs of all steps and a Scan over the steps."""
    outs, hs, cs = [], [], []
    for d, p in enumerate(params):
        reverse = d == 1
        xw = g.op("MatMul", [x, g.const("Wih_t", _np(p.w_ih).T)], hint="xw")  # [T, B, GH]
        if p.ln is not None:  # LN(x W_ih^T) over the GH features of each step, before the biases
            xw = g.op("LayerNormalization", [xw, g.const("ln_ih_w", _np(p.ln.ih_weight)), g.const("ln_ih_b", _np(p.ln.ih_bias))],
                      hint="xw_ln", axis=-1, epsilon=var.eps)
        if p.b_ih is not None:
            xw = g.op("Add", [xw, g.const("b", _np(p.b_ih) + _np(p.b_hh))], hint="xwb")
        scan_in = [xw] + ([mask] if mask else [])
        body = _scan_body(p, H, P, reverse, mask is not None, var)
        attrs: dict[str, Any] = {"body": body, "num_scan_inputs": len(scan_in)}
        if reverse:
            attrs.update(scan_input_directions=[1] * len(scan_in), scan_output_directions=[1])
        h_n, c_n, y = g.op("Scan", [h0s[d], c0s[d], *scan_in], n_out=3, hint="scan", **attrs)
        outs.append(y)  # [T, B, P]
        hs.append(g.op("Unsqueeze", [h_n, g.const("axis0", [0], np.int64)]))  # [1, B, P]
        cs.append(g.op("Unsqueeze", [c_n, g.const("axis0", [0], np.int64)]))
    out = outs[0] if len(outs) == 1 else g.op("Concat", outs, hint="out", axis=-1)  # [T, B, D·P]
    return out, hs, cs


def _build(model: LSTM, route: str, initial_state: bool, lengths: bool, opset: int, name: str):
    import onnx
    from onnx import TensorProto, helper

    L, D, H, P, I = model.num_layers, model.num_directions, model.hidden_size, model.state_size, model.input_size
    f32 = TensorProto.FLOAT
    g = _Graph()
    x_dims = ["B", "T", I] if model.batch_first else ["T", "B", I]
    graph_inputs = [helper.make_tensor_value_info("input", f32, x_dims)]
    x = "input"
    if model.batch_first:
        x = g.op("Transpose", [x], hint="x_tm", perm=[1, 0, 2])  # [B, T, I] -> [T, B, I]
    if initial_state:
        graph_inputs += [helper.make_tensor_value_info("h0", f32, [L * D, "B", P]),
                         helper.make_tensor_value_info("c0", f32, [L * D, "B", H])]
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]))

    params = model._layer_params()
    var = _StepVariants(model.coupled, model.layer_norm_eps, zone_h=model.zoneout_h, zone_c=model.zoneout_c)
    h_parts: list[str] = []
    c_parts: list[str] = []
    if route == "native":
        seq_lens = g.op("Cast", ["lengths"], hint="seq_lens", to=TensorProto.INT32) if lengths else None
        for k in range(L):
            h0 = c0 = None
            if initial_state:
                lo, hi = g.const("lo", [k * D], np.int64), g.const("hi", [(k + 1) * D], np.int64)
                h0 = g.op("Slice", ["h0", lo, hi], hint=f"h0_l{k}")  # [D, B, H]
                c0 = g.op("Slice", ["c0", lo, hi], hint=f"c0_l{k}")
            x, y_h, y_c = _native_layer(g, x, params[k], H, h0, c0, seq_lens)
            h_parts.append(y_h)
            c_parts.append(y_c)
    else:
        mask = None
        if lengths:
            shape = g.op("Shape", [x])
            T = g.op("Gather", [shape, g.const("i0", 0, np.int64)], hint="T", axis=0)
            steps = g.op("Range", [g.const("zero", 0, np.int64), T, g.const("one", 1, np.int64)], hint="steps")  # [T]
            steps = g.op("Unsqueeze", [steps, g.const("axis1", [1], np.int64)])  # [T, 1]
            mask = g.op("Less", [steps, "lengths"], hint="active")  # [T, B]: step t < length
            mask = g.op("Unsqueeze", [mask, g.const("axis2", [2], np.int64)], hint="mask")  # [T, B, 1]
        if not initial_state:
            Bdim = g.op("Gather", [g.op("Shape", [x]), g.const("i1", [1], np.int64)], hint="B", axis=0)  # [1]
            zeros_h = g.op("ConstantOfShape", [g.op("Concat", [Bdim, g.const("P", [P], np.int64)], axis=0)], hint="zeros_h",
                           value=helper.make_tensor("v", f32, [1], [0.0]))
            zeros_c = g.op("ConstantOfShape", [g.op("Concat", [Bdim, g.const("H", [H], np.int64)], axis=0)], hint="zeros_c",
                           value=helper.make_tensor("v", f32, [1], [0.0]))
        for k in range(L):
            if initial_state:
                idx = [g.const("idx", k * D + d, np.int64) for d in range(D)]
                h0s = [g.op("Gather", ["h0", i], hint=f"h0_{k}", axis=0) for i in idx]  # [B, P]
                c0s = [g.op("Gather", ["c0", i], hint=f"c0_{k}", axis=0) for i in idx]  # [B, H]
            else:
                h0s, c0s = [zeros_h] * D, [zeros_c] * D
            x, hs, cs = _scan_layer(g, x, params[k], H, P, h0s, c0s, mask, var)
            h_parts += hs
            c_parts += cs
    out = x
    if model.batch_first:
        out = g.op("Transpose", [out], hint="out_bf", perm=[1, 0, 2])  # [T, B, ·] -> [B, T, ·]
    g.nodes.append(helper.make_node("Identity", [out], ["output"]))
    for final, parts in (("h_n", h_parts), ("c_n", c_parts)):
        src = parts[0] if len(parts) == 1 else g.op("Concat", parts, hint=final, axis=0)  # [L·D, B, ·]
        g.nodes.append(helper.make_node("Identity", [src], [final]))
    out_dims = ["B", "T", D * P] if model.batch_first else ["T", "B", D * P]
    graph_outputs = [helper.make_tensor_value_info("output", f32, out_dims),
                     helper.make_tensor_value_info("h_n", f32, [L * D, "B", P]),
                     helper.make_tensor_value_info("c_n", f32, [L * D, "B", H])]
    graph = helper.make_graph(g.nodes, name, graph_inputs, graph_outputs, initializer=g.inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="lstmkit")
    from .. import __version__

    helper.set_model_props(onnx_model, {"lstmkit_version": __version__, "lstmkit_route": route,
                                        "lstmkit_module": repr(model)})
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def export_onnx(
    model: Union[LSTM, nn.LSTM, sLSTM, mLSTM],
    path: Optional[Union[str, os.PathLike]] = None,
    *,
    initial_state: bool = False,
    lengths: bool = False,
    method: str = "auto",
    opset: int = DEFAULT_OPSET,
) -> Any:
    """Write an lk.LSTM (or torch.nn.LSTM, lk.sLSTM, lk.mLSTM) as an ONNX model; returns the onnx.ModelProto.

    Args:
        model: the network (its current weights; exported as float32, dropout not exported).
            lk.sLSTM / lk.mLSTM export as Scan graphs with their own state inputs and outputs
            (lstmkit.interop.onnx_xlstm has the signature).
        path: file to write, or None to only return the model.
        initial_state: add inputs h0 [L·D, B, P] and c0 [L·D, B, H] (else the state starts at zero).
        lengths: add an int64 input lengths [B] for right-padded batches (lk.LSTM's lengths=).
        method: "auto" (the LSTM operator when it can express the model, else a Scan
            decomposition), "native" or "scan" to insist (see EXPORT_SUPPORT).
        opset: ONNX opset (default 17; Scan's per-input directions need ≥ 11).

    Example:
        >>> import lstmkit as lk
        >>> from lstmkit.interop import export_onnx
        >>> m = export_onnx(lk.LSTM(4, 8, num_layers=2), None)          # doctest: +SKIP
        >>> [n.op_type for n in m.graph.node if n.op_type == "LSTM"]    # doctest: +SKIP
        ['LSTM', 'LSTM']
        >>> # onnxruntime.InferenceSession("m.onnx").run(None, {"input": x})  -> output, h_n, c_n
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'lstmkit[onnx]' (or pip install onnx)") from None
    if isinstance(model, nn.LSTM):
        from .converters import from_torch

        model = from_torch(model)
    if not isinstance(model, (LSTM, sLSTM, mLSTM)):
        raise TypeError(f"export_onnx expects an lk.LSTM or torch.nn.LSTM (or lk.sLSTM, lk.mLSTM), got {type(model).__name__}")
    if opset < 11:
        raise ExportError(f"opset must be at least 11 (Scan's directions, Range), got {opset}")
    route = export_route(model, method)
    if isinstance(model, (sLSTM, mLSTM)):
        from .onnx_xlstm import export_xlstm

        if opset < 13:
            raise ExportError(f"lk.{type(model).__name__} needs opset >= 13 (Split, Squeeze and Unsqueeze with "
                              f"tensor inputs), got {opset}")
        onnx_model = export_xlstm(model, initial_state=bool(initial_state), lengths=bool(lengths), opset=int(opset))
        if path is not None:
            onnx.save(onnx_model, os.fspath(path))
        return onnx_model
    if model.layer_norm and opset < _LAYER_NORM_OPSET:
        raise ExportError(f"layer_norm needs opset >= {_LAYER_NORM_OPSET} (LayerNormalization), got opset={opset}")
    with evaluating(model):  # what the graph computes: no dropout, zoneout's expectation
        onnx_model = _build(model, route, bool(initial_state), bool(lengths), int(opset), name="lstmkit_lstm")
    if path is not None:
        onnx.save(onnx_model, os.fspath(path))
    return onnx_model


def add_linear_head(proto: Any, weight: torch.Tensor, bias: Optional[torch.Tensor], *, source: str = "output",
                    name: str = "prediction") -> Any:
    """Append a linear read-out ``name = source · Wᵀ + b`` to an exported graph, as a new output.

    Args:
        proto: a model from export_onnx (modified in place and returned).
        weight: (O, F) and bias: (O,) or None — an nn.Linear's, F the feature size of source.
        source: "output" → name (T, B, O) (or (B, T, O) with batch_first), one row per step;
            "last" → name (B, O) from h_n of the last layer's forward direction: each
            sequence's own last step when the graph has the lengths input.
    """
    from onnx import TensorProto, helper

    g = _Graph(prefix=f"{name}_")
    if source == "output":
        feats = "output"
    elif source == "last":
        feats = g.op("Gather", ["h_n", g.const("last", -1, np.int64)], hint="h_last", axis=0)  # [B, P]
    else:
        raise ExportError(f"source must be 'output' or 'last', got {source!r}")
    y = g.op("MatMul", [feats, g.const("W_t", _np(weight).T)], hint="matmul")  # [..., O]
    if bias is not None:
        y = g.op("Add", [y, g.const("b", _np(bias))], hint="add")
    g.nodes.append(helper.make_node("Identity", [y], [name]))
    proto.graph.node.extend(g.nodes)
    proto.graph.initializer.extend(g.inits)
    O = weight.shape[0]
    if source == "output":  # the leading (T, B) or (B, T) dims of output, then O
        dims = proto.graph.output[0].type.tensor_type.shape.dim
        lead = [d.dim_param or d.dim_value for d in dims[:2]]
    else:
        lead = ["B"]
    proto.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, lead + [O]))
    return proto


def add_embedding_input(proto: Any, weight: torch.Tensor, *, name: str = "ids") -> Any:
    """Feed the graph from token ids: ``input = weight[ids]`` replaces the float input ``input``.

    Args:
        proto: a model from export_onnx (modified in place and returned).
        weight: (V, E) an nn.Embedding's weight, E the exported LSTM's input_size.
        name: the new int64 input, shaped as ``input`` without its feature axis: [T, B] (or [B, T]
            with batch_first).
    """
    from onnx import TensorProto, helper

    inputs = [i for i in proto.graph.input if i.name == "input"]
    if not inputs:
        raise ExportError("add_embedding_input needs a graph with a float input named 'input' (from export_onnx)")
    dims = inputs[0].type.tensor_type.shape.dim
    E = dims[2].dim_value
    if weight.dim() != 2 or weight.shape[1] != E:
        raise ExportError(f"embedding weight must be (V, {E}) for an LSTM with input_size {E}, got {tuple(weight.shape)}")
    g = _Graph(prefix=f"{name}_")
    table = g.const("embedding", _np(weight))  # (V, E)
    lookup = helper.make_node("Gather", [table, name], ["input"], name=g.name("Gather"), axis=0)  # [., ., E]
    lead = [d.dim_param or d.dim_value for d in dims[:2]]
    proto.graph.input.remove(inputs[0])
    proto.graph.input.insert(0, helper.make_tensor_value_info(name, TensorProto.INT64, lead))
    proto.graph.node.insert(0, lookup)  # first: every node that read the graph input now reads the lookup
    proto.graph.initializer.extend(g.inits)
    return proto
