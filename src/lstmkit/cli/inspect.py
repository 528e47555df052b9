"""``lstmkit inspect RUN``: the gate explorer — one offline HTML page of every gate over an input."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

DESCRIPTION = """Write the gate explorer of a trained run: one self-contained HTML page (works offline,
loads nothing) showing what every unit of the LSTM did over one input.

A `text` run reads --text or --text-file: each character is coloured by the chosen layer,
direction, quantity (i, f, g, o, c, h) and unit; the unit browser ranks units by how strongly
they track a regular expression you type (Pearson r between the match mask and the activation),
beside cell-state trajectories and each unit's forget-gate memory span. A `forecast` run shows
its series (or --window START:END of it) with the gates aligned below it.

--figures DIR writes the same views as PNGs (matplotlib). --serve serves the page on
127.0.0.1 with the model live: type new text in the page and it runs the model on it."""

EXAMPLES = """examples:
  lstmkit inspect runs/text --text-file notes.txt --pattern '"[^"\\n]*"'
  lstmkit inspect runs/text --text "ROMEO: 'Tis but thy name" --layer 2 --out romeo.html --figures figs/
  lstmkit inspect runs/forecast --window 96:144 --member 1
  lstmkit inspect runs/text --text-file act1.txt --serve --port 8765"""

MAX_CHARS = 20_000


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="gate explorer: an offline HTML page of every gate over an input",
                              description=DESCRIPTION, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("run_dir", metavar="RUN", help="run folder of a `text` or `forecast` training run")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", help="the input text (text runs)")
    src.add_argument("--text-file", metavar="FILE", help="read the input text from this UTF-8 file (text runs)")
    p.add_argument("--window", metavar="START:END",
                   help="forecast runs: rows START..END-1 of the run's series (default: all of it)")
    p.add_argument("--member", type=int, default=1, help="forecast runs: which ensemble member's LSTM (1-based, default 1)")
    p.add_argument("--out", metavar="HTML", help="where to write the page (default: RUN/explorer.html)")
    p.add_argument("--layer", type=int, default=1, help="layer shown first, 1-based (default 1)")
    p.add_argument("--direction", choices=("forward", "reverse"), default="forward", help="bidirectional runs")
    p.add_argument("--quantity", choices=("i", "f", "g", "z", "o", "c", "n", "m", "h"), default="c",
                   help="shown first (default c); z, n, m are sLSTM's / mLSTM's, g the LSTM's")
    p.add_argument("--unit", type=int, default=None,
                   help="unit shown first, 0-based (default: the best match of --pattern, else 0)")
    p.add_argument("--pattern", default="", help="regular expression the unit browser starts with (text runs)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8,
                   help="precision of the values stored in the page (default 8: a step of range/255)")
    p.add_argument("--max-chars", type=int, default=MAX_CHARS, help=f"refuse longer texts (default {MAX_CHARS})")
    p.add_argument("--figures", metavar="DIR", help="also write the views as PNG figures into DIR (needs matplotlib)")
    p.add_argument("--serve", action="store_true", help="serve the page on 127.0.0.1 with the model live")
    p.add_argument("--port", type=int, default=8765, help="--serve port (default 8765; 0: any free port)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(run=run)


# ------------------------------------------------------------------ the input
def read_text(args) -> str:
    from ..apps.text.data import load_text
    from . import CliError

    if args.text_file:
        text = load_text(args.text_file)
    elif args.text is not None:
        text = args.text
    else:
        raise CliError("a text run needs its input: --text \"...\" or --text-file FILE")
    if not text:
        raise CliError("--text is empty; give at least one character")
    if len(text) > args.max_chars:
        raise CliError(f"the text has {len(text):,} characters; the page holds at most {args.max_chars:,} "
                       "(--max-chars), so cut it or raise the limit")
    return text


# ------------------------------------------------------------------ the command
def run(args) -> int:
    import torch

    from ..apps.explore import ExplorerRequest, explorable_tasks
    from ..pretrained import default_output, resolve_run
    from ..train.run import load_run
    from ..viz import PatternError, pattern_mask, rank_units
    from ..viz.explorer import write_explorer
    from ..viz.patterns import compile_pattern
    from . import CliError

    if args.threads < 1:
        raise CliError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    args.out = args.out or default_output(args.run_dir, "explorer.html")  # not into the package
    args.run_dir = resolve_run(args.run_dir)  # a shipped model's name (lstmkit inspect shakespeare)
    if not os.path.isdir(args.run_dir):
        raise CliError(f"no run folder at {args.run_dir}")
    _, task, model = load_run(args.run_dir, kind=explorable_tasks(), command="inspect")
    name = os.path.basename(os.path.normpath(args.run_dir))
    if task.explorer_reads == "text":  # what the app's page is drawn over: its hook says (apps/explore.py)
        if args.window:
            raise CliError("--window is for forecast runs; a text run reads --text or --text-file")
        text = read_text(args)
        if args.pattern:
            compile_pattern(args.pattern)  # a bad regex fails here, as one line
        request = ExplorerRequest(text=text, title=f"{name}: {len(text):,} characters")
    else:
        if args.text is not None or args.text_file or args.pattern:
            raise CliError("--text, --text-file and --pattern are for text runs; a forecast run takes --window")
        text = None
        request = ExplorerRequest(window=args.window, member=args.member)
    states = task.gate_states(model, request)

    L, D = states.num_layers, states.num_directions
    if not 1 <= args.layer <= L:
        raise CliError(f"--layer must be in [1, {L}] (1-based; the model has {L}), got {args.layer}")
    layer, direction = args.layer - 1, (1 if args.direction == "reverse" else 0)
    if direction >= D:
        raise CliError("--direction reverse needs a bidirectional LSTM; this one runs forward only")
    if args.quantity not in states.quantities and args.quantity != "c":  # "c" stands for mLSTM's h (no cell vector)
        raise CliError(f"--quantity {args.quantity!r}: this model records {', '.join(states.quantities)}")
    args.quantity = args.quantity if args.quantity in states.quantities else states.memory
    U = states.units(args.quantity)
    unit = args.unit
    ranked = None
    if text is not None and args.pattern:
        try:
            order, r = rank_units(pattern_mask(text, args.pattern), states.get(states.memory, layer, direction))
            ranked = (order, r)
        except PatternError as e:
            raise CliError(str(e)) from None
    if unit is None:
        unit = int(ranked[0][0]) if ranked is not None and ranked[0][0] < U else 0
    if not 0 <= unit < U:
        raise CliError(f"--unit must be in [0, {U - 1}] (0-based), got {unit}")

    options = dict(text=text, pattern=args.pattern, layer=layer, quantity=args.quantity, unit=unit, bits=args.bits)
    out = args.out or os.path.join(args.run_dir, "explorer.html")
    write_explorer(states, out, **options)
    print(f"page         {out}  ({os.path.getsize(out) / 1e6:.2f} MB, {states.steps:,} steps, {L} layer(s) × "
          f"{states.hidden_size} units; open it in any browser, offline)")
    if ranked is not None:
        order, r = ranked
        best = ", ".join(f"{int(u)} (r {r[u]:+.2f})" for u in order[:5])
        print(f"pattern      {args.pattern!r}: best units of layer {args.layer} ({states.memory}) — {best}")
    if args.figures:
        from ..viz.figures import write_figures

        paths = write_figures(states, args.figures, text=text, layer=layer, direction=direction, unit=unit,
                              quantity=args.quantity, pattern=args.pattern)
        print(f"figures      {args.figures}: " + ", ".join(os.path.basename(p) for p in paths))
    if args.serve:
        serve(args, model, task, states, text, options)
    return 0


def serve(args, model, task, states, text: Optional[str], options: dict) -> None:
    """Serve the page on 127.0.0.1:args.port until Ctrl-C; a text run answers new text live."""
    from ..apps.explore import ExplorerRequest
    from ..viz.explorer import build_payload, render_page
    from ..viz.server import HOST, make_server
    from . import CliError

    live = text is not None  # new input is typed text; a forecast window is chosen on the command line
    page = render_page(build_payload(states, **{**options, "live": live}))

    def compute(request: dict) -> dict:
        if not live:
            raise ValueError("live input is for text runs; restart with another --window for a forecast run")
        new = request.get("text")
        if not isinstance(new, str) or not new:
            raise ValueError('expected {"text": "..."} with at least one character')
        if len(new) > args.max_chars:
            raise ValueError(f"the text has {len(new):,} characters; this server takes at most {args.max_chars:,}")
        s = task.gate_states(model, ExplorerRequest(text=new, title=f"{len(new):,} characters"))
        return build_payload(s, **{**options, "text": new, "unit": min(options["unit"], s.units(options["quantity"]) - 1),
                                   "live": True})

    try:
        server = make_server(page, compute, args.port)
    except OSError as e:
        raise CliError(f"cannot listen on {HOST}:{args.port} ({e.strerror}); choose another --port") from None
    host, port = server.server_address[:2]
    print(f"serving      http://{host}:{port}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
