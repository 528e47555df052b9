"""`lstmkit train text --model rnn|slstm|mlstm`: the plain RNN and the xLSTM cells in the character language model."""
from __future__ import annotations

import pytest
import torch

from lstmkit.apps.text import TextConfig, TextTask
from lstmkit.apps.text.model import CharLM
from lstmkit.cli import main


@pytest.mark.parametrize("model", ["rnn", "slstm", "mlstm"])
def test_train_then_generate_through_the_cli(model, tmp_path, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text("abcd\n" * 400, encoding="utf-8")
    run = str(tmp_path / "run")
    rc = main(["train", "text", "--data", str(data), "--run_dir", run, "--model", model, "--num_heads", "2",
               "--hidden_size", "16", "--embedding_size", "8", "--seq_len", "20", "--train.batch_size", "8",
               "--train.steps", "80", "--train.lr", "0.02", "--train.progress", "off", "--train.plot", "false",
               "--train.threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    nats = float(next(line.split()[-1] for line in out.splitlines() if line.startswith("eval loss")))
    assert nats < 0.3  # a period-5 text: chance is log 5 = 1.61 nats
    assert main(["generate", run, "--prime", "ab", "--length", "8", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == "abcd\nabcd\n\n"


def test_reset_state_zeroes_restarted_streams_of_every_state_shape():
    task = TextTask(TextConfig(model="mlstm", vocab="ab", num_heads=2, hidden_size=8))
    model = task.build_model()
    _, state = model(torch.zeros(3, 4, dtype=torch.long))
    reset = task.reset_state(state, torch.tensor([False, True, False]))
    for before, after in zip(state, reset):
        assert (after[:, 1] == 0).all() and torch.equal(after[:, 0], before[:, 0]) and torch.equal(after[:, 2], before[:, 2])


def test_errors_name_the_value():
    with pytest.raises(ValueError, match="text: model must be one of lstm, rnn, slstm, mlstm, got 'gru'"):
        TextConfig(model="gru")
    with pytest.raises(ValueError, match="layer_norm apply to cell='lstm' only, got cell='slstm'"):
        CharLM(5, cell="slstm", layer_norm=True)
