"""Export lk.sLSTM and lk.mLSTM to ONNX as Scan graphs, written node by node (no tracing).

ONNX has no operator for either cell, so each layer and direction is the lk.LSTM scan route's
shape: the input projection of all steps as one MatMul, then a ``Scan`` whose body is one step
of the cell's stabilized equations (lstmkit.xlstm.slstm_reference, lstmkit.xlstm.mlstm_forms),
with their empty-memory rule (m_{t-1} taken as −∞ where the memory is empty).

sLSTM body, per step (B batch, H hidden; state h, c, n, m each (B, H))::

    pre = xw_t + h_{t-1} R                         R: weight_hh as its dense block-diagonal (H, 4H)
    ĩ, f̃, z̃, õ = Split(pre)
    log f = min(f̃, 0) − log(1 + exp(−|f̃|))        (forget_gate="sigmoid": log σ, overflow-free)
          = f̃                                      (forget_gate="exp")
    a = log f + Where(n_{t-1} > 0, m_{t-1}, −∞);   m = max(a, ĩ)
    c = exp(a − m) c_{t-1} + exp(ĩ − m) tanh(z̃);   n = exp(a − m) n_{t-1} + exp(ĩ − m)
    h = σ(õ) c / n

mLSTM body, per step (NH heads of d units; state C (B, NH, d, d), n (B, NH, d), m (B, NH)); q,
k (already scaled by 1/√d), v, o and the scalar ĩ, log f come in per step from the projection::

    a = log f + Where(C and n all zero, −∞, m_{t-1});   m = max(a, ĩ)
    C = exp(a − m) C + exp(ĩ − m) v kᵀ;   n = exp(a − m) n + exp(ĩ − m) k
    h = σ(o) ⊙ C q / (max(|nᵀ q|, exp(min(−m, log(max float32) − 2))) + 1e-6)

This is mLSTM's recurrent form; the module's chunkwise and parallel forms compute the same
numbers (the tests pin the three together), so the graph matches whichever form the model uses.

Graph signature (T and B dynamic; float32)::

    inputs   input [T, B, I] ([B, T, I] with batch_first)
             sLSTM: h0, c0, n0, m0 [L·D, B, H]           (with initial_state=True; else zeros)
             mLSTM: C0 [L·D, B, NH, d, d], n0 [L·D, B, NH, d], m0 [L·D, B, NH]
             lengths [B] int64                            (with lengths=True)
    outputs  output [T, B, D·H] ([B, T, D·H] with batch_first)
             sLSTM: h_n, c_n, n_n, m_n [L·D, B, H];   mLSTM: C_n, n_n, m_n

With lengths, steps past a sequence's length leave its state unchanged and output zeros, and
the reverse direction (a reverse Scan) therefore starts at each sequence's own last step: the
modules' contract. Eval mode: dropout between layers is not in the graph.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ..xlstm.mlstm import MLSTMLayerParams
from ..xlstm.mlstm_forms import EPS
from ..xlstm.slstm import sLSTM
from ..xlstm.slstm_reference import SLSTMLayerParams, block_diagonal
from .onnx_export import _Graph, _np

_FLOAT32_EXP_CAP = math.log(float(np.finfo(np.float32).max)) - 2  # mlstm_forms._lower_bound's cap


def _value_info(name: str, elem: Any) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, None)


def _log_forget(b: _Graph, f_pre: str, forget_gate: str) -> str:
    if forget_gate == "exp":
        return f_pre
    # log σ(x) = min(x, 0) − log(1 + exp(−|x|)): no exp of a large positive number
    tail = b.op("Log", [b.op("Add", [b.const("one", 1.0), b.op("Exp", [b.op("Neg", [b.op("Abs", [f_pre])])])])])
    return b.op("Sub", [b.op("Min", [f_pre, b.const("zero", 0.0)]), tail], hint="log_f")


def _finish_body(b: _Graph, new: list[str], prev: list[str], y: str, masks: Optional[list[str]], step_inputs: list[str],
                 name: str) -> Any:
    """Masking (finished sequences keep their state, output zeros: masks[j] broadcasts against
    new[j], masks[-1] against y) and the body's graph: inputs prev + step_inputs (+ m_t)."""
    from onnx import TensorProto, helper

    masked = masks is not None
    if masks is not None:
        y = b.op("Where", [masks[-1], y, b.const("y_zero", 0.0)], hint="y")
        new = [b.op("Where", [mk, s, p], hint="kept") for mk, s, p in zip(masks, new, prev)]
    outs = [f"{p}_out" for p in prev] + ["y_out"]
    for src, dst in zip(new + [y], outs):
        b.nodes.append(helper.make_node("Identity", [src], [dst]))
    f32 = TensorProto.FLOAT
    ins = [_value_info(p, f32) for p in prev] + [_value_info(n, f32) for n in step_inputs]
    if masked:
        ins.append(_value_info("m_t", TensorProto.BOOL))
    return helper.make_graph(b.nodes, name, ins, [_value_info(o, f32) for o in outs], initializer=b.inits)


def _slstm_body(p: SLSTMLayerParams, H: int, forget_gate: str, masked: bool, name: str) -> Any:
    b = _Graph(prefix="body_")
    prev = ["h_prev", "c_prev", "n_prev", "m_prev"]
    R = _np(block_diagonal(p.w_hh.detach()))  # (4H, H)
    pre = b.op("Add", ["xw_t", b.op("MatMul", ["h_prev", b.const("R_t", R.T)], hint="hh")], hint="pre")  # (B, 4H)
    i_pre, f_pre, z_pre, o_pre = b.op("Split", [pre, b.const("split", [H] * 4, np.int64)], n_out=4, hint="gate", axis=1)
    remembers = b.op("Greater", ["n_prev", b.const("zero", 0.0)], hint="remembers")
    m_prev = b.op("Where", [remembers, "m_prev", b.const("neg_inf", -np.inf)], hint="m_prev_eff")
    a = b.op("Add", [_log_forget(b, f_pre, forget_gate), m_prev], hint="log_f_m")
    m = b.op("Max", [a, i_pre], hint="m")
    i = b.op("Exp", [b.op("Sub", [i_pre, m])], hint="i")
    f = b.op("Exp", [b.op("Sub", [a, m])], hint="f")
    z = b.op("Tanh", [z_pre], hint="z")
    o = b.op("Sigmoid", [o_pre], hint="o")
    c = b.op("Add", [b.op("Mul", [f, "c_prev"]), b.op("Mul", [i, z])], hint="c")
    n = b.op("Add", [b.op("Mul", [f, "n_prev"]), i], hint="n")
    h = b.op("Mul", [o, b.op("Div", [c, n])], hint="h")
    return _finish_body(b, [h, c, n, m], prev, h, ["m_t"] * 5 if masked else None, ["xw_t"], name)


def _mlstm_body(masked: bool, name: str) -> Any:
    """One step on per-step inputs q, k, v, o (B, NH, d) and ĩ, log f (B, NH)."""
    b = _Graph(prefix="body_")
    prev = ["C_prev", "n_prev", "m_prev"]
    last = b.const("ax_last", [-1], np.int64)
    last2 = b.const("ax_last2", [-2, -1], np.int64)
    c_used = b.op("ReduceSum", [b.op("Abs", ["C_prev"]), last2], keepdims=0)  # (B, NH); 0 only if all are
    n_used = b.op("ReduceSum", [b.op("Abs", ["n_prev"]), last], keepdims=0)
    zero = b.const("zero", 0.0)
    empty = b.op("And", [b.op("Equal", [c_used, zero]), b.op("Equal", [n_used, zero])], hint="empty")
    m_prev = b.op("Where", [empty, b.const("neg_inf", -np.inf), "m_prev"], hint="m_prev_eff")
    a = b.op("Add", ["lf_t", m_prev], hint="log_f_m")
    m = b.op("Max", [a, "i_t"], hint="m")  # (B, NH)
    i = b.op("Exp", [b.op("Sub", ["i_t", m])], hint="i")
    f = b.op("Exp", [b.op("Sub", [a, m])], hint="f")
    f1 = b.op("Unsqueeze", [f, last], hint="f1")  # (B, NH, 1)
    i1 = b.op("Unsqueeze", [i, last], hint="i1")
    f2 = b.op("Unsqueeze", [f1, last], hint="f2")  # (B, NH, 1, 1)
    i2 = b.op("Unsqueeze", [i1, last], hint="i2")
    vk = b.op("Mul", [b.op("Unsqueeze", ["v_t", last]), b.op("Unsqueeze", ["k_t", b.const("ax_m2", [-2], np.int64)])],
              hint="vk")  # (B, NH, d, d): v kᵀ
    C = b.op("Add", [b.op("Mul", [f2, "C_prev"]), b.op("Mul", [i2, vk])], hint="C")
    n = b.op("Add", [b.op("Mul", [f1, "n_prev"]), b.op("Mul", [i1, "k_t"])], hint="n")
    num = b.op("Squeeze", [b.op("MatMul", [C, b.op("Unsqueeze", ["q_t", last])]), last], hint="Cq")  # (B, NH, d)
    nq = b.op("Abs", [b.op("ReduceSum", [b.op("Mul", [n, "q_t"]), last], keepdims=0)], hint="nq")  # (B, NH)
    bound = b.op("Exp", [b.op("Min", [b.op("Neg", [m]), b.const("cap", _FLOAT32_EXP_CAP)])], hint="bound")
    den = b.op("Add", [b.op("Max", [nq, bound]), b.const("eps", EPS)], hint="den")
    h = b.op("Mul", [b.op("Sigmoid", ["o_t"]), b.op("Div", [num, b.op("Unsqueeze", [den, last])])], hint="h")
    masks = None
    if masked:  # m_t is (B,): one view per rank of C (B, NH, d, d), n and h (B, NH, d), m (B, NH)
        m1 = b.op("Unsqueeze", ["m_t", b.const("ax1", [1], np.int64)], hint="mask1")
        m2 = b.op("Unsqueeze", [m1, last], hint="mask2")
        m3 = b.op("Unsqueeze", [m2, last], hint="mask3")
        masks = [m3, m2, m1, m2]
    return _finish_body(b, [C, n, m], prev, h, masks, ["q_t", "k_t", "v_t", "o_t", "i_t", "lf_t"], name)


def _slstm_scan_inputs(g: _Graph, x: str, p: SLSTMLayerParams) -> list[str]:
    xw = g.op("MatMul", [x, g.const("Wih_t", _np(p.w_ih).T)], hint="xw")  # [T, B, 4H]
    if p.b_ih is not None:
        xw = g.op("Add", [xw, g.const("b", _np(p.b_ih) + _np(p.b_hh))], hint="xwb")
    return [xw]


def _mlstm_scan_inputs(g: _Graph, x: str, p: MLSTMLayerParams, H: int, NH: int, forget_gate: str) -> list[str]:
    """q, k/√d, v, o pre-activations [T, B, NH, d] and ĩ, log f [T, B, NH] for every step."""
    d = H // NH
    proj = g.op("MatMul", [x, g.const("Wih_t", _np(p.w_ih).T)], hint="proj")  # [T, B, 4H + 2NH]
    if p.b_ih is not None:
        proj = g.op("Add", [proj, g.const("b", _np(p.b_ih))], hint="projb")
    parts = g.op("Split", [proj, g.const("split", [H] * 4 + [NH, NH], np.int64)], n_out=6, hint="part", axis=2)
    shape = g.const("heads", [0, 0, NH, d], np.int64)
    q, k, v, o = (g.op("Reshape", [t, shape], hint=n) for t, n in zip(parts[:4], "qkvo"))
    k = g.op("Mul", [k, g.const("scale", 1.0 / math.sqrt(d))], hint="k_scaled")
    lf = _log_forget(g, parts[5], forget_gate)
    return [q, k, v, o, parts[4], lf]


def _zeros(g: _Graph, x: str, tail: list[int], hint: str) -> str:
    from onnx import TensorProto, helper

    B = g.op("Gather", [g.op("Shape", [x]), g.const("i1", [1], np.int64)], hint="B", axis=0)  # [1]
    shape = g.op("Concat", [B, g.const("tail", tail, np.int64)], axis=0)
    return g.op("ConstantOfShape", [shape], hint=hint, value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))


def _build(model: Any, initial_state: bool, lengths: bool, opset: int) -> Any:
    import onnx
    from onnx import TensorProto, helper

    is_s = isinstance(model, sLSTM)
    L, D, H, I, NH = model.num_layers, model.num_directions, model.hidden_size, model.input_size, model.num_heads
    d = H // NH
    names = ("h", "c", "n", "m") if is_s else ("C", "n", "m")
    tails = [[H]] * 4 if is_s else [[NH, d, d], [NH, d], [NH]]
    f32 = TensorProto.FLOAT
    g = _Graph()
    graph_inputs = [helper.make_tensor_value_info("input", f32, ["B", "T", I] if model.batch_first else ["T", "B", I])]
    x = "input"
    if model.batch_first:
        x = g.op("Transpose", [x], hint="x_tm", perm=[1, 0, 2])  # [B, T, I] -> [T, B, I]
    if initial_state:
        graph_inputs += [helper.make_tensor_value_info(f"{s}0", f32, [L * D, "B", *t]) for s, t in zip(names, tails)]
    mask = None
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]))
        T = g.op("Gather", [g.op("Shape", [x]), g.const("i0", 0, np.int64)], hint="T", axis=0)
        steps = g.op("Range", [g.const("s0", 0, np.int64), T, g.const("s1", 1, np.int64)], hint="steps")  # [T]
        steps = g.op("Unsqueeze", [steps, g.const("axis1", [1], np.int64)])  # [T, 1]
        mask = g.op("Less", [steps, "lengths"], hint="active")  # [T, B]
        if is_s:  # the mask broadcasts against (B, H) in the body; mLSTM's (B, NH[, d]) values need more
            mask = g.op("Unsqueeze", [mask, g.const("axis2", [2], np.int64)], hint="mask")  # [T, B, 1]
    zeros = None if initial_state else [_zeros(g, x, t, f"zeros_{s}") for s, t in zip(names, tails)]
    finals: list[list[str]] = [[] for _ in names]
    params = model._layer_params()
    for k in range(L):
        outs = []
        for direction, p in enumerate(params[k]):
            reverse = direction == 1
            if initial_state:
                idx = g.const("idx", k * D + direction, np.int64)
                init = [g.op("Gather", [f"{s}0", idx], hint=f"{s}0_{k}", axis=0) for s in names]
            else:
                init = list(zeros)
            if is_s:
                scan_in = _slstm_scan_inputs(g, x, p)
                body = _slstm_body(p, H, model.forget_gate, mask is not None, f"slstm_step_l{k}_d{direction}")
            else:
                scan_in = _mlstm_scan_inputs(g, x, p, H, NH, model.forget_gate)
                body = _mlstm_body(mask is not None, f"mlstm_step_l{k}_d{direction}")
            scan_in = scan_in + ([mask] if mask is not None else [])
            attrs: dict[str, Any] = {"body": body, "num_scan_inputs": len(scan_in)}
            if reverse:
                attrs.update(scan_input_directions=[1] * len(scan_in), scan_output_directions=[1])
            *state_n, y = g.op("Scan", [*init, *scan_in], n_out=len(names) + 1, hint="scan", **attrs)
            if not is_s:  # (T, B, NH, d) -> (T, B, H)
                y = g.op("Reshape", [y, g.const("flat", [0, 0, H], np.int64)], hint="y_flat")
            outs.append(y)
            for acc, s in zip(finals, state_n):
                acc.append(g.op("Unsqueeze", [s, g.const("axis0", [0], np.int64)]))  # [1, B, ...]
        x = outs[0] if D == 1 else g.op("Concat", outs, hint="out", axis=-1)  # [T, B, D·H]
    out = g.op("Transpose", [x], hint="out_bf", perm=[1, 0, 2]) if model.batch_first else x
    g.nodes.append(helper.make_node("Identity", [out], ["output"]))
    graph_outputs = [helper.make_tensor_value_info("output", f32, ["B", "T", D * H] if model.batch_first else ["T", "B", D * H])]
    for s, t, parts in zip(names, tails, finals):
        src = parts[0] if len(parts) == 1 else g.op("Concat", parts, hint=f"{s}_n", axis=0)  # [L·D, B, ...]
        g.nodes.append(helper.make_node("Identity", [src], [f"{s}_n"]))
        graph_outputs.append(helper.make_tensor_value_info(f"{s}_n", f32, [L * D, "B", *t]))
    kind = "slstm" if is_s else "mlstm"
    graph = helper.make_graph(g.nodes, f"lstmkit_{kind}", graph_inputs, graph_outputs, initializer=g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="lstmkit")
    from .. import __version__

    helper.set_model_props(proto, {"lstmkit_version": __version__, "lstmkit_route": "scan", "lstmkit_module": repr(model)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_xlstm(model: Any, *, initial_state: bool, lengths: bool, opset: int) -> Any:
    """The ONNX model of an lk.sLSTM or lk.mLSTM (export_onnx calls this; see its arguments)."""
    from .._recurrent import evaluating

    with evaluating(model):
        return _build(model, initial_state, lengths, opset)
