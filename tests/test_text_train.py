"""The "text" task: streams that carry state across batches, and train → generate through the CLI."""
from __future__ import annotations

import json
import os

import pytest
import torch

from lstmkit.apps.text import TextConfig, TextTask
from lstmkit.cli import main


def write(tmp_path, text: str, name: str = "corpus.txt") -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_batches_continue_each_stream_and_reset_on_wrap(tmp_path):
    text = "".join(chr(65 + (i * 7) % 26) for i in range(2000))
    task = TextTask(TextConfig(data=write(tmp_path, text), seq_len=10, ngram_context=0))
    batches = task.train_batches(0, batch_size=4)
    per_pass = (1800 // 4 - 1) // 10  # 1800 train characters → 4 streams of 450
    seen = [next(batches) for _ in range(per_pass + 1)]
    for k in range(1, per_pass):
        assert torch.equal(seen[k]["x"][:, 0], seen[k - 1]["y"][:, -1])  # the stream goes on
        assert torch.equal(seen[k]["x"][:, 1:], seen[k]["y"][:, :-1])  # y is x shifted by one
        assert not seen[k]["reset"].any()
    assert seen[0]["reset"].all() and seen[per_pass]["reset"].all()
    assert torch.equal(seen[per_pass]["x"], seen[0]["x"])  # the next pass starts over
    rows = [task.vocab.decode(r.tolist()) for r in seen[0]["x"]]
    assert rows[0] == text[:10] and rows[1] == text[450:460]
    # Batch k depends only on k (what a resumed run relies on).
    assert torch.equal(next(task.train_batches(3, batch_size=4))["x"], seen[3]["x"])


def test_vocab_goes_into_the_config_and_rebuilds_without_the_data(tmp_path):
    cfg = TextConfig(data=write(tmp_path, "hello world\n" * 50), ngram_context=0)
    task = TextTask(cfg)
    assert cfg.vocab == "\n dehlorw" == task.vocab.chars
    os.remove(cfg.data)
    again = TextTask(TextConfig(data=cfg.data, vocab=cfg.vocab))  # the data is read only when needed
    assert again.build_model().decoder.out_features == len(cfg.vocab)


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match="tie_weights needs embedding_size == hidden_size, got 64 and 512"):
        TextConfig(tie_weights=True)
    with pytest.raises(ValueError, match="dropout must be in \\[0, 1\\), got 1.5"):
        TextConfig(dropout=1.5)


def test_a_run_config_from_before_ngram_context_still_loads():
    from lstmkit.train.config import parse_run_config

    old = {"task": "text", "ngram_order": 4, "vocab": "ab"}  # ngram_order n: n - 1 characters of context
    assert parse_run_config(old).options.ngram_context == 3
    assert parse_run_config(dict(old, ngram_order=0)).options.ngram_context == 0
    assert parse_run_config({"task": "text", "vocab": "ab"}).to_dict()["ngram_order"] is None


def test_train_then_generate_through_the_cli(tmp_path, capsys):
    data = write(tmp_path, "abcd\n" * 400)
    run = str(tmp_path / "run")
    rc = main(["train", "text", "--data", data, "--run_dir", run, "--hidden_size", "32", "--embedding_size", "8",
               "--seq_len", "20", "--train.batch_size", "8", "--train.steps", "120", "--train.lr", "0.02",
               "--train.progress", "off", "--train.plot", "false", "--train.threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    nats = float(next(line.split()[-1] for line in out.splitlines() if line.startswith("eval loss")))
    ngram = float(next(line.split()[-1] for line in out.splitlines() if line.startswith("eval order3_ngram_loss")))
    assert nats < 0.1 and ngram < 0.1  # a period-5 text is almost certain after a few characters
    assert json.load(open(os.path.join(run, "config.json")))["vocab"] == "\nabcd"

    # Greedy continuation of a period-5 text is that text.
    assert main(["generate", run, "--prime", "ab", "--length", "13", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == "abcd\nabcd\nabcd\n\n"
    # Sampling: the same seed prints the same text, and the data file is not needed.
    os.remove(data)
    outs = []
    for _ in range(2):
        assert main(["generate", run, "--prime", "c", "--length", "30", "--temperature", "1.5", "--seed", "5"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and len(outs[0]) == 1 + 30 + 1

    # Errors are one line with exit code 2.
    assert main(["generate", run, "--prime", "xyz"]) == 2
    assert "error: character 'x' is not in the model's vocabulary" in capsys.readouterr().err
    assert main(["generate", run, "--top-p", "0"]) == 2
    assert main(["generate", str(tmp_path / "nope")]) == 2


def test_train_text_rejects_a_binary_file_in_one_line(tmp_path, capsys):
    p = tmp_path / "blob.bin"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert main(["train", "text", "--data", str(p), "--run_dir", str(tmp_path / "r"), "--train.progress", "off"]) == 2
    err = capsys.readouterr().err.strip()
    assert "looks binary" in err and len(err.splitlines()) == 1
