"""``lstmkit export RUN --onnx model.onnx``: a trained run's LSTM as an ONNX model."""
from __future__ import annotations

import argparse
import os

DESCRIPTION = """Export the LSTM of a run folder (written by `lstmkit train`) to ONNX.

The graph's inputs are `input` (+ `h0`, `c0` with --initial-state, `lengths` with --lengths)
and its outputs `output`, `h_n`, `c_n`, as lk.LSTM's forward. For the long-lag tasks' models
(an LSTM core and a linear head) the head is appended as the output `prediction`, so the file
computes the task's predictions. A character language model (`lstmkit train text`) exports
whole: int64 character ids `ids` [B, T] in (the run's config.json holds the vocabulary), the
embedding, the LSTM and the decoder, next-character `logits` [B, T, V] out. --core-only leaves
the task's parts out. Layers, directions, bias=False and
batch_first map onto ONNX's LSTM operator; a projection (proj_size) is exported as a Scan
decomposition, and so are lk.sLSTM and lk.mLSTM (`--model slstm|mlstm` runs), whose states
are h0, c0, n0, m0 / C0, n0, m0 in and h_n, c_n, n_n, m_n / C_n, n_n, m_n out. Run it with onnxruntime:

    sess = onnxruntime.InferenceSession("model.onnx")
    output, h_n, c_n, *rest = sess.run(None, {"input": x, ...})   # x float32"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a run's LSTM to ONNX (onnxruntime-ready)", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by `lstmkit train`")
    p.add_argument("--onnx", required=True, metavar="PATH", help="the .onnx file to write")
    p.add_argument("--module", default=None, metavar="NAME",
                   help="which lk.LSTM submodule to export when the model has several (dotted name)")
    p.add_argument("--initial-state", action="store_true", help="add h0 / c0 inputs (default: zero state)")
    p.add_argument("--lengths", action="store_true", help="add an int64 lengths [B] input for right-padded batches")
    p.add_argument("--method", choices=("auto", "native", "scan"), default="auto",
                   help="auto: ONNX LSTM operator when it fits, else Scan (default: auto)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--core-only", action="store_true", help="export only the LSTM, without the task's head")
    p.set_defaults(run=run)


def _pick(model, name):
    from ..lstm import LSTM
    from ..xlstm import mLSTM, sLSTM
    from . import CliError

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, (LSTM, sLSTM, mLSTM))]
    if name is not None:
        for n, m in found:
            if n == name:
                return n, m
        raise CliError(f"--module {name!r}: no lk.LSTM of that name; the model has: "
                       f"{', '.join(repr(n) for n, _ in found) or 'none'}")
    if not found:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise CliError(f"the run's model has no lk.LSTM to export (it has: {', '.join(kinds)}); "
                       "the ONNX exporter covers lk.LSTM, lk.sLSTM and lk.mLSTM")
    if len(found) > 1:
        raise CliError(f"the model has {len(found)} lk.LSTM modules ({', '.join(repr(n) for n, _ in found)}): "
                       "choose one with --module")
    return found[0]


def run(args) -> int:
    import torch

    from ..apps.text.model import CharLM
    from ..interop.onnx_export import add_embedding_input, add_linear_head, export_onnx, export_route
    from .._io import atomic_path
    from ..train.run import load_run
    from . import CliError

    try:
        import onnx
    except ImportError:
        raise CliError("ONNX export needs the onnx package: pip install 'lstmkit[onnx]'") from None
    if not os.path.isdir(args.run_dir):
        raise CliError(f"no run folder at {args.run_dir}")
    cfg, _task, model = load_run(args.run_dir, command="export")
    name, lstm = _pick(model, args.module)
    head = None
    readout = getattr(model, "readout", None)
    if (not args.core_only and name == "core" and isinstance(getattr(model, "head", None), torch.nn.Linear)
            and readout in ("every", "last") and not lstm.bidirectional):
        head = model.head  # tasks.model.SequenceModel: forward(x, lengths) = head(core(x) at lengths - 1 or every step)
    lengths = args.lengths or (head is not None and readout == "last")
    proto = export_onnx(lstm, None, initial_state=args.initial_state, lengths=lengths, method=args.method,
                        opset=args.opset)
    if head is not None:
        add_linear_head(proto, head.weight, head.bias, source="output" if readout == "every" else "last")
    char_lm = not args.core_only and isinstance(model, CharLM) and lstm is model.lstm
    if char_lm:  # ids -> embedding -> LSTM -> decoder; dropout is off at inference
        add_embedding_input(proto, model.embedding.weight, name="ids")
        add_linear_head(proto, model.decoder.weight, model.decoder.bias, source="output", name="logits")
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(args.onnx) as tmp:  # a failed or killed export leaves no half file
        onnx.save(proto, tmp)
    inputs = ", ".join(i.name for i in proto.graph.input)
    outputs = ", ".join(o.name for o in proto.graph.output)
    print(f"wrote {args.onnx}: {cfg.task} run's {name or 'model'} ({lstm!r}) via {export_route(lstm, args.method)} route")
    print(f"inputs  {inputs}")
    print(f"outputs {outputs}" + (f"  (prediction = head({'last step' if readout == 'last' else 'every step'}))"
                                   if head is not None else ""))
    if char_lm:
        print("ids: character ids in the run's vocabulary (config.json: task.vocab); logits = decoder(LSTM(embedding[ids]))")
    elif head is None and lstm is not model:
        rest = sorted({type(m).__name__ for n, m in model.named_modules() if n and n != name and not n.startswith(name + ".")})
        print(f"note: only the LSTM {name!r} is in the graph; the model's other parts ({', '.join(rest)}) are not")
    return 0
