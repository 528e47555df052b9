"""``lstmkit generate RUN``: write text with a character language model trained by ``lstmkit train text``."""
from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Sample text from a `text` run, printing each character as it is drawn.

The priming text is run through the model first and printed; then --length new characters
follow, each fed back with the LSTM state carried. --temperature scales the logits (0:
greedy, lower: safer, higher: wilder); --top-k keeps the k most likely characters; --top-p
keeps the smallest set of most likely characters holding that much probability. The same
--seed gives the same text."""

EXAMPLES = """examples:
  lstmkit train text --run_dir runs/shakespeare
  lstmkit generate runs/shakespeare --prime "ROMEO:" --length 500 --temperature 0.8
  lstmkit generate runs/shakespeare --prime "KING." --top-p 0.9 --seed 3"""


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="write text with a trained character language model (`text` run)",
                              description=DESCRIPTION, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("run_dir", metavar="RUN", help="run folder of a `text` training run")
    p.add_argument("--prime", default="", help="text to start from (default: a newline)")
    p.add_argument("--length", type=int, default=500, help="characters to generate (default 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the K most likely characters (default 0: off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (default 1: off)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one each time)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch

    from ..apps.text.generate import check_sampling, generate
    from ..apps.text.task import TextTask
    from . import CliError, load_run_of

    check_sampling(args.temperature, args.top_k, args.top_p)
    if args.length < 0:
        raise CliError(f"--length must be >= 0, got {args.length}")
    if args.threads < 1:
        raise CliError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    cfg, task, model = load_run_of(args.run_dir, TextTask, "text", "generate")
    chars = generate(model, task.vocab, args.prime, args.length, args.temperature, args.top_k, args.top_p, args.seed)
    first = next(chars, "")  # errors about the prime surface before anything is printed
    out = sys.stdout
    out.write(args.prime + first)
    out.flush()
    for ch in chars:
        out.write(ch)
        out.flush()
    out.write("\n")
    return 0
