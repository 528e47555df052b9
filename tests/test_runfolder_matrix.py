"""Every producer × every consumer: a tiny run of each kind (the demo's long-lag task, echo, text,
forecast, classify, translate) is resumed, exported, loaded, and handed to every application
command; each either works or answers one line (the kind line when the run is of another kind)."""
from __future__ import annotations

import os

import pytest
import torch

from lstmkit.cli import main
from lstmkit.paper1997.runner import run_task
from lstmkit.train import load_run
from lstmkit.train import checkpoint as ckpt
from runfolder_util import ECHO_ARGS

FAST = ["--train.progress", "off", "--train.plot", "false", "--train.threads", "1", "--train.steps", "2"]
TEXT = "To be, or not to be, that is the question.\n" * 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("matrix")
    (d / "corpus.txt").write_text(TEXT, encoding="utf-8")
    (d / "seqs.csv").write_text("id,label,f1\n" + "".join(f"s{k},{'ab'[k % 2]},{k * 0.1 + t}\n"
                                                          for k in range(12) for t in range(3)))
    out = {"adding": str(d / "adding")}
    run_task("adding", "lstm", 10, hidden_size=4, batch_size=4, max_steps=2, eval_every=2, run_dir=out["adding"])
    commands = {
        "echo": [*ECHO_ARGS],
        "text": ["--task", "text", "--data", str(d / "corpus.txt"), "--hidden_size", "6", "--embedding_size", "4",
                 "--seq_len", "8", "--train.batch_size", "2"],
        "forecast": ["--task", "forecast", "--data", "airline", "--horizon", "3", "--lookback", "6",
                     "--hidden_size", "4"],
        "classify": ["--task", "classify", "--data", str(d / "seqs.csv"), "--val_fraction", "0.25",
                     "--hidden_size", "4", "--train.batch_size", "4"],
        "translate": ["--task", "translate", "--data", "dates", "--hidden_size", "8", "--embedding_size", "4",
                      "--eval_size", "0", "--test_size", "5", "--train.batch_size", "4"],
    }
    for kind, args in commands.items():
        out[kind] = str(d / kind)
        assert main(["train", *args, *FAST, "--run_dir", out[kind]]) == 0, kind
    return out


USES = {  # command line for a run folder R → the kind it reads
    "generate": (["generate", "R", "--length", "5", "--seed", "0"], ("text",)),
    "forecast": (["forecast", "R"], ("forecast",)),
    "classify": (["classify", "R", "--data", "DATA/seqs.csv", "--png", "R/cm.png"], ("classify",)),
    "translate": (["translate", "R", "2 March 1987"], ("translate",)),
    "inspect": (["inspect", "R", "--out", "R/page.html"], ("forecast", "text")),  # + --text for a text run
}
KINDS = ("adding", "echo", "text", "forecast", "classify", "translate")


@pytest.mark.parametrize("kind", KINDS)
def test_every_run_records_format_and_kind_and_resumes_loads_and_exports(runs, kind, tmp_path, capsys):
    run = runs[kind]
    config = ckpt.load_config(run)
    assert config["format"] == ckpt.FORMAT and config["task"] == kind
    cfg, _task, _model = load_run(run)
    assert main(["train", "--resume", run, "--train.steps", str(cfg.train.steps + 1)]) == 0
    assert ckpt.read_state(run)["step"] == cfg.train.steps + 1
    capsys.readouterr()
    onnx_path = str(tmp_path / "m.onnx")
    rc = main(["export", run, "--onnx", onnx_path])
    err = capsys.readouterr().err.strip()
    assert rc == 0 or (rc == 2 and len(err.splitlines()) == 1 and not os.path.exists(onnx_path)), err


@pytest.mark.parametrize("use", sorted(USES))
@pytest.mark.parametrize("kind", KINDS)
def test_every_command_takes_its_kind_and_names_the_mismatch_of_any_other(runs, kind, use, capsys):
    argv, reads = USES[use]
    run = runs[kind]
    argv = [a.replace("R", run, 1) if a.startswith("R") else a.replace("DATA", os.path.dirname(run)) for a in argv]
    if use == "inspect" and kind == "text":
        argv += ["--text", "To be"]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    if kind in reads:
        assert rc == 0, err
    else:
        needs = " or ".join(repr(k) for k in reads)
        article = "an" if kind[0] in "aeio" else "a"
        assert rc == 2 and err == f"lstmkit {use}: error: {run} is {article} {kind!r} run; {use} needs a {needs} run"
