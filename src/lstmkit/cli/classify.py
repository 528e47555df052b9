"""``lstmkit classify RUN``: score (or just label) sequences with a trained "classify" run."""
from __future__ import annotations

import argparse
import csv
import os

DESCRIPTION = """Run a sequence classifier trained with `lstmkit train --task classify` on data.

Without --data it scores the test split of the data the run was trained on (the built-in
set's own test split, or the run's test_data file). With --data it reads a built-in set
(japanese_vowels, digits, fashion_mnist; --split picks train or test) or a .csv / .npz file
(format: `python -c "import lstmkit.apps.classify.data as d; help(d)"`); labels are then
optional. With labels it prints accuracy, per-class precision / recall / F1 and the
confusion matrix, and writes the matrix as a PNG (default RUN/confusion_<data>.png)."""

EXAMPLES = """examples:
  lstmkit train --task classify --data japanese_vowels --bidirectional true --run_dir runs/jv
  lstmkit classify runs/jv                          the test split: report + confusion PNG
  lstmkit classify runs/jv --data new.csv --predictions out.csv"""


def register(subparsers) -> None:
    p = subparsers.add_parser("classify", help="score or label sequences with a trained classify run",
                              description=DESCRIPTION, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("run_dir", metavar="RUN", help="run folder of a `classify` training run")
    p.add_argument("--data", default=None, help="built-in set name or .csv / .npz file (default: the run's test split)")
    p.add_argument("--split", choices=("train", "test"), default="test", help="split of a built-in set (default test)")
    p.add_argument("--png", default=None, metavar="PATH", help="confusion-matrix PNG (default RUN/confusion_<data>.png)")
    p.add_argument("--predictions", default=None, metavar="PATH", help="write index,predicted[,true],probability as CSV")
    p.add_argument("--batch-size", type=int, default=512, help="sequences per forward pass (default 512)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(run=run)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in os.path.splitext(os.path.basename(name))[0])


def run(args) -> int:
    import numpy as np
    import torch

    from .._io import atomic_path
    from ..apps.classify import metrics as M
    from ..apps.classify.data import load_data
    from ..apps.classify.task import ClassifyTask, predict
    from . import CliError, load_run_of

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, task, model = load_run_of(args.run_dir, ClassifyTask, "classify", "classify")

    if args.data is None:
        data = task.test_data()
        if data is None:
            raise CliError(f"the run was trained on {cfg.options.data} without test_data: give --data FILE")
        label = f"{_safe(cfg.options.data)}_test"  # the training data may be a path: the PNG stays in RUN
    else:
        data = load_data(args.data, args.split, classes=task.classes, require_labels=False)
        label = f"{_safe(args.data)}_{args.split}" if args.data.lower().replace("-", "_") in (
            "japanese_vowels", "digits", "fashion_mnist") else _safe(args.data)
    want = model.feature_mean.shape[0]
    if data.num_features != want:
        raise CliError(f"{args.data or cfg.options.data}: sequences have {data.num_features} features, "
                       f"the model expects {want}")

    logits = predict(model, data, args.batch_size)  # (N, C)
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    pred = probs.argmax(1)

    if args.predictions:
        with atomic_path(args.predictions) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["index", "predicted"] + (["true"] if data.y is not None else []) + ["probability"])
            for i in range(len(pred)):
                w.writerow([i, task.classes[pred[i]]] + ([task.classes[data.y[i]]] if data.y is not None else [])
                           + [f"{probs[i, pred[i]]:.6f}"])
        print(f"predictions  {args.predictions}")

    if data.y is None:
        counts = np.bincount(pred, minlength=len(task.classes))
        print(f"{len(pred)} sequences (no labels to score); predicted classes:")
        for name, n in zip(task.classes, counts):
            print(f"  {name}: {int(n)}")
        return 0

    cm = M.confusion_matrix(data.y, pred, len(task.classes))
    print(M.format_report(cm, task.classes))
    png = args.png or os.path.join(args.run_dir, f"confusion_{label}.png")
    if M.plot_confusion(cm, task.classes, png, title=label):
        print(f"confusion matrix  {png}")
    return 0
