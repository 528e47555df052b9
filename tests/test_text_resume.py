"""Resuming a text run continues each training stream's carried (h, c): a run interrupted after a
checkpoint and resumed ends with the same weights as one never interrupted. The checkpoint holds
the carried state (trainer_state.pt, ``ranks[r]["carry"]``); a resume without it starts the
streams from zeros and ends elsewhere, which the last test shows."""
from __future__ import annotations

import io
import os

import torch
from safetensors.torch import load_file

from lstmkit.apps.text import TextConfig, TextTask
from lstmkit.cli import main
from lstmkit.train import TrainConfig, Trainer
from lstmkit.train import checkpoint as ckpt

STEPS = 12  # 4 streams of ~600 characters in windows of 10: no stream wraps (and resets) within 12 steps


class Interrupted(Exception):
    """Stands for the process dying right after the checkpoint at step STEPS // 2."""


class DiesAfterCheckpoint(TextTask):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__(cfg)
        self.calls = 0

    def loss(self, model, batch, state):
        self.calls += 1
        if self.calls == STEPS // 2 + 1:
            raise Interrupted
        return super().loss(model, batch, state)


def corpus(tmp_path) -> str:
    text = "".join(f"LINE {i % 7}: {'abcdefg'[i % 5:]} {i * 37 % 101}.\n" for i in range(140))
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def text_config(data: str) -> TextConfig:
    # Two layers and dropout: the resumed run also needs the RNG state and every layer's (h, c).
    return TextConfig(data=data, seq_len=10, embedding_size=8, hidden_size=16, num_layers=2, dropout=0.1,
                      ngram_context=0)


def train_config(**kw) -> TrainConfig:
    base = dict(steps=STEPS, batch_size=4, lr=0.01, warmup_steps=3, checkpoint_every=STEPS // 2, eval_every=5,
                progress="off", plot=False, seed=3)
    return TrainConfig(**{**base, **kw})


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def interrupted_then_resumed(tmp_path, data: str, name: str, edit_checkpoint=None, **kw) -> dict[str, torch.Tensor]:
    run = str(tmp_path / name)
    try:
        Trainer(DiesAfterCheckpoint(text_config(data)), train_config(**kw), run).fit()
        raise AssertionError("the run was not interrupted")
    except Interrupted:
        pass
    assert torch.load(os.path.join(run, ckpt.STATE), weights_only=True)["step"] == STEPS // 2
    if edit_checkpoint is not None:
        edit_checkpoint(os.path.join(run, ckpt.STATE))
    resumed = Trainer(TextTask(text_config(data)), train_config(**kw), run)
    assert resumed.fit(resume=True).step == STEPS
    return weights(resumed.model)


def straight(data: str, **kw) -> dict[str, torch.Tensor]:
    trainer = Trainer(TextTask(text_config(data)), train_config(**kw))
    trainer.fit()
    return weights(trainer.model)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)  # same ops in the same order


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    data = corpus(tmp_path)
    assert_same(straight(data), interrupted_then_resumed(tmp_path, data, "run"))


def test_resume_inside_a_batch_cut_into_tbptt_windows(tmp_path):
    data = corpus(tmp_path)  # seq_len 10 cut into windows of 4, 4, 2: step 6 ends inside batch 3
    assert_same(straight(data, tbptt=4), interrupted_then_resumed(tmp_path, data, "run", tbptt=4))


def test_checkpoint_holds_the_streams_state_and_resume_needs_it(tmp_path):
    data = corpus(tmp_path)
    run = str(tmp_path / "kept")
    interrupted_then_resumed(tmp_path, data, "kept")
    carry = torch.load(os.path.join(run, ckpt.STATE), weights_only=True)["ranks"][0]["carry"]
    h, c = carry  # the state after the last step: every layer, every stream, non-zero
    assert h.shape == c.shape == (2, 4, 16) and bool((h.abs().sum(-1) > 0).all())

    def forget_the_carry(path):  # what a resume that restarts the streams would see
        state = torch.load(path, weights_only=True)
        state["ranks"][0]["carry"] = None
        buf = io.BytesIO()
        torch.save(state, buf)
        ckpt.atomic_write_bytes(path, buf.getvalue())

    a, b = straight(data), interrupted_then_resumed(tmp_path, data, "forgot", forget_the_carry)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_cli_resume_with_more_steps_equals_one_run(tmp_path, capsys):
    """`lstmkit train --resume RUN --train.steps N` after a finished run of N/2 steps (constant rate,
    so the schedule is the same either way) ends where one run of N steps ends."""
    data = corpus(tmp_path)
    args = ["train", "text", "--data", data, "--seq_len", "10", "--embedding_size", "8", "--hidden_size", "16",
            "--dropout", "0.1", "--ngram_context", "0", "--train.batch_size", "4", "--train.schedule", "constant",
            "--train.progress", "off", "--train.plot", "false", "--train.threads", "1"]
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    assert main(args + ["--run_dir", whole, "--train.steps", str(STEPS)]) == 0
    assert main(args + ["--run_dir", split, "--train.steps", str(STEPS // 2)]) == 0
    assert main(["train", "--resume", split, "--train.steps", str(STEPS)]) == 0
    capsys.readouterr()
    assert_same(load_file(os.path.join(whole, ckpt.MODEL)), load_file(os.path.join(split, ckpt.MODEL)))
