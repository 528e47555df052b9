"""``lstmkit translate RUN "text"``: translate with an encoder–decoder trained by ``lstmkit train translate``."""
from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Translate text with a `translate` run, or score its held-out test split.

Each TEXT argument (or each line of --file; "-" reads standard input) is translated and
printed on its own line, in order; an empty line gives an empty line. --beam 1 decodes
greedily; a larger beam keeps that many hypotheses and ranks finished ones by log-likelihood
divided by the length penalty ((5 + n) / 6) ** alpha (--length-penalty, default the run's).
Tokens the source vocabulary does not hold (for subword models: only unseen characters) are
named on standard error; an <unk> in the output is replaced by the source token the model
attended to (--keep-unk prints <unk> instead).

--test scores the run's held-out test split instead: exact match for dates, sacrebleu BLEU
beside the copy-the-source baseline for gettext / TSV data."""

EXAMPLES = """examples:
  lstmkit train translate --data dates --hidden_size 128 --embedding_size 32 --run_dir runs/dates
  lstmkit translate runs/dates "23rd of November 2026" "Monday, March 2, 1987"
  lstmkit train translate --data gettext --run_dir runs/enfr
  lstmkit translate runs/enfr "Open the file." --beam 5
  lstmkit translate runs/enfr --file messages.txt > messages.fr.txt
  lstmkit translate runs/enfr --test --beam 5"""


def register(subparsers) -> None:
    p = subparsers.add_parser("translate", help="translate text with a trained encoder-decoder (`translate` run)",
                              description=DESCRIPTION, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("run_dir", metavar="RUN", help="run folder of a `translate` training run")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="text to translate (several: one line each)")
    p.add_argument("--file", default=None, metavar="F", help="translate every line of F ('-': standard input)")
    p.add_argument("--test", action="store_true", help="score the held-out test split instead of translating")
    p.add_argument("--beam", type=int, default=None, help="beam size; 1 is greedy (default: the run's, 5)")
    p.add_argument("--length-penalty", type=float, default=None, metavar="ALPHA",
                   help="length penalty exponent for beam ranking, >= 0 (default: the run's, 0.6)")
    p.add_argument("--max-len", type=int, default=None, help="output tokens at most (default 2 x source + 10)")
    p.add_argument("--keep-unk", action="store_true", help="print <unk> instead of copying the attended source word")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(run=run)


def _read_lines(path: str) -> list[str]:
    from . import CliError

    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise CliError(f"--file {path}: not UTF-8 text (undecodable byte at offset {e.start})") from None


def run(args) -> int:
    import torch

    from ..apps.translate.data import normalize
    from ..apps.translate.decode import translate
    from ..apps.translate.task import TranslateTask
    from . import CliError, load_run_of

    if args.threads < 1:
        raise CliError(f"--threads must be >= 1, got {args.threads}")
    if args.beam is not None and args.beam < 1:
        raise CliError(f"--beam must be >= 1 (1: greedy), got {args.beam}")
    if args.length_penalty is not None and not args.length_penalty >= 0:
        raise CliError(f"--length-penalty must be >= 0, got {args.length_penalty}")
    if args.max_len is not None and args.max_len < 1:
        raise CliError(f"--max-len must be >= 1, got {args.max_len}")
    given = bool(args.texts) + (args.file is not None) + args.test
    if given != 1:
        raise CliError("give the text to translate as arguments, or --file F, or --test (exactly one of them)"
                       if given == 0 else "give text arguments, --file or --test, not several of them")
    torch.set_num_threads(args.threads)
    cfg, task, model = load_run_of(args.run_dir, TranslateTask, "translate", "translate")
    opts = cfg.options
    beam = opts.beam if args.beam is None else args.beam
    alpha = opts.length_penalty if args.length_penalty is None else args.length_penalty

    if args.test:
        from ..apps.translate.metrics import INSTALL_HINT, have_sacrebleu

        if opts.data != "dates" and not have_sacrebleu():
            raise CliError(f"--test scores {opts.data!r} with BLEU, which needs sacrebleu: {INSTALL_HINT}")
        scores = task.score(model, "test", beam=beam, alpha=alpha, replace_unk=not args.keep_unk)
        how = "greedy" if beam == 1 else f"beam {beam}, length penalty {alpha:g}"
        print(f"test split   {int(scores['sentences'])} sentences of {opts.data} ({how})")
        if "bleu" in scores:
            print(f"BLEU         {scores['bleu']:.2f}")
            print(f"copy BLEU    {scores['copy_bleu']:.2f}   (the untranslated source as output)")
        print(f"exact match  {100 * scores['exact_match']:.2f} %")
        return 0

    lines = list(args.texts) if args.texts else _read_lines(args.file)
    texts = [normalize(t) for t in lines]  # the cleaning the training data had
    unknown = list(dict.fromkeys(tok.strip() for t in texts for tok in task.src_vocab.unknown(t)))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        print(f"note: not in the model's source vocabulary: {shown}", file=sys.stderr)
    outputs = translate(model, task.src_vocab, task.tgt_vocab, texts, beam, alpha, args.max_len,
                        replace_unk=not args.keep_unk)
    for line in outputs:
        print(line)
    return 0
