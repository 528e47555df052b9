"""The "translate" task end to end: `lstmkit train translate …` then `lstmkit translate RUN …`, and its errors."""
from __future__ import annotations

import json
import os
import random

import pytest
import torch

from lstmkit.apps.translate import TranslateConfig, TranslateTask
from lstmkit.apps.translate.metrics import have_sacrebleu
from lstmkit.cli import main

FAST = ["--train.progress", "off", "--train.plot", "false", "--train.threads", "1"]
WORDS = {"one": "un", "two": "deux", "three": "trois", "four": "quatre", "five": "cinq", "six": "six",
         "red": "rouge", "green": "vert", "blue": "bleu", "cat": "chat", "dog": "chien", "bird": "oiseau"}


def word_pairs(n=1200, seed=0):
    """Word-for-word 'translations' of 1–4 words: learnable in a few hundred steps."""
    rng = random.Random(seed)
    out = {}
    while len(out) < n:
        ws = [rng.choice(sorted(WORDS)) for _ in range(rng.randint(1, 4))]
        out[" ".join(ws)] = " ".join(WORDS[w] for w in ws)
    return out


def write_tsv(tmp_path, pairs, name="pairs.tsv") -> str:
    p = tmp_path / name
    p.write_text("".join(f"{s}\t{t}\n" for s, t in pairs.items()), encoding="utf-8")
    return str(p)


def test_dates_train_then_translate(tmp_path, capsys):
    run = str(tmp_path / "dates")
    rc = main(["train", "translate", "--data", "dates", "--run_dir", run, "--hidden_size", "24", "--embedding_size",
               "8", "--eval_size", "20", "--test_size", "30", "--train.steps", "20", "--train.batch_size", "16"] + FAST)
    assert rc == 0
    out = capsys.readouterr().out
    assert "eval exact_match" in out and "eval loss" in out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["tokens"] == "char" and cfg["tgt_vocab"][4:] == list("-0123456789")

    assert main(["translate", run, "23rd of November 2026", "Nov 23, 2026", "--beam", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(set(line) <= set("-0123456789") for line in lines)  # a 20-step model
    assert main(["translate", run, "--test", "--beam", "1"]) == 0
    out = capsys.readouterr().out
    assert "30 sentences of dates (greedy)" in out and "exact match" in out and "BLEU" not in out


@pytest.mark.skipif(not have_sacrebleu(), reason="BLEU needs sacrebleu")
def test_tsv_train_learns_and_translate_reads_files(tmp_path, capsys):
    data = write_tsv(tmp_path, word_pairs())
    run = str(tmp_path / "words")
    rc = main(["train", "translate", "--data", data, "--run_dir", run, "--hidden_size", "32", "--embedding_size", "16",
               "--dropout", "0", "--label_smoothing", "0", "--min_count", "1", "--train.steps", "250",
               "--train.batch_size", "32", "--train.lr", "0.01", "--train.eval_every", "0"] + FAST)
    assert rc == 0
    capsys.readouterr()
    assert main(["translate", run, "--test", "--beam", "3"]) == 0
    out = capsys.readouterr().out
    bleu = float(next(line.split()[1] for line in out.splitlines() if line.startswith("BLEU")))
    copy = float(next(line.split()[2] for line in out.splitlines() if line.startswith("copy BLEU")))
    exact = float(next(line.split()[2] for line in out.splitlines() if line.startswith("exact match")))
    assert bleu > 90 and exact > 90 and copy < 10

    os.remove(data)  # translation needs only the run folder
    f = tmp_path / "in.txt"
    f.write_text("red cat\n\nsix  blue dög\n", encoding="utf-8")
    assert main(["translate", run, "--file", str(f)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "rouge chat" and lines[1] == "" and len(lines) == 3
    assert "not in the model's source vocabulary: 'ö'" in captured.err  # subword: only unseen characters
    assert lines[2].startswith("six bleu ")


def test_translate_errors_are_one_line(tmp_path, capsys):
    run = str(tmp_path / "d")
    assert main(["train", "translate", "--data", "dates", "--run_dir", run, "--hidden_size", "8", "--embedding_size",
                 "4", "--eval_size", "0", "--test_size", "5", "--train.steps", "2", "--train.batch_size", "4"] + FAST) == 0
    capsys.readouterr()
    cases = [
        (["translate", run], "give the text to translate as arguments, or --file F, or --test"),
        (["translate", run, "x", "--test"], "not several of them"),
        (["translate", run, "x", "--beam", "0"], "--beam must be >= 1 (1: greedy), got 0"),
        (["translate", run, "x", "--length-penalty", "-1"], "--length-penalty must be >= 0, got -1.0"),
        (["translate", str(tmp_path / "nope"), "x"], "no run folder at"),
        (["translate", run, "--file", str(tmp_path / "missing.txt")], "No such file or directory"),
        (["train", "translate", "--data", str(tmp_path / "none.tsv"), "--run_dir", str(tmp_path / "r")],
         "none.tsv: no such file (give 'dates', 'gettext' or a TSV file"),
        (["train", "translate", "--attention", "dot", "--run_dir", str(tmp_path / "r")],
         "attention 'dot' needs bidirectional = false"),
        (["train", "translate", "--attention", "luong", "--run_dir", str(tmp_path / "r")],
         "attention must be one of general, dot, additive, got 'luong'"),
        (["train", "translate", "--train.tbptt", "5", "--train.steps", "1", "--run_dir", str(tmp_path / "r2")] + FAST,
         "train.tbptt must be 0"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)


def test_a_tiny_tsv_is_refused_by_name(tmp_path):
    data = write_tsv(tmp_path, {"a": "b", "c": "d"})
    with pytest.raises(ValueError, match="leave the (valid|test|train) split empty"):
        TranslateTask(TranslateConfig(data=data))


def test_batches_are_a_function_of_their_index_with_little_padding(tmp_path):
    task = TranslateTask(TranslateConfig(data=write_tsv(tmp_path, word_pairs(600)), min_count=1))
    b = task.global_batch(3, 16)
    again = TranslateTask(TranslateConfig(data=task.cfg.data, min_count=1)).global_batch(3, 16)
    assert all(torch.equal(b[k], again[k]) for k in b)
    assert torch.equal(b["src_lengths"], (b["src"] != 0).sum(1))
    assert (b["tgt"][:, 0] == 1).all() and ((b["tgt"] == 2).sum(1) == 1).all()  # <s> … </s> once per row
    # Length-sorted buckets: a batch's source lengths differ by little.
    spans = [int(l.max() - l.min()) for l in (task.global_batch(k, 16)["src_lengths"] for k in range(20))]
    assert sum(spans) / len(spans) <= 2
