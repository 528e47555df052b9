"""Run folders: atomic writes, corrupt / truncated checkpoints rejected, the roll-forward after a
kill between the two file moves, and the folder's contents."""
from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from lstmkit.train import checkpoint as ckpt
from lstmkit.train import CheckpointError, TrainConfig, Trainer
from lstmkit.train.toy import EchoConfig, EchoTask


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def saved(tmp_path, seed=0, step=7):
    run = str(tmp_path / "run")
    model = small_model(seed)
    ckpt.save_checkpoint(run, model, {"step": step, "extra": torch.arange(3)})
    return run, model


def test_roundtrip_restores_weights_and_state(tmp_path):
    run, model = saved(tmp_path)
    other = small_model(seed=1)
    state = ckpt.load_checkpoint(run, other)
    assert state["step"] == 7 and torch.equal(state["extra"], torch.arange(3))
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert sorted(os.listdir(run)) == [ckpt.MODEL, ckpt.STATE]  # no temporary files left


@pytest.mark.parametrize("name", [ckpt.MODEL, ckpt.STATE])
def test_truncated_file_is_rejected_with_one_clear_error(tmp_path, name):
    run, _ = saved(tmp_path)
    path = os.path.join(run, name)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ckpt.load_checkpoint(run, small_model())


def test_flipped_byte_in_the_weights_is_rejected(tmp_path):
    run, _ = saved(tmp_path)
    path = os.path.join(run, ckpt.MODEL)
    data = bytearray(open(path, "rb").read())
    data[-5] ^= 0xFF  # inside tensor data: safetensors itself would load this silently
    open(path, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        ckpt.load_checkpoint(run, small_model())


def test_garbage_state_file_is_rejected(tmp_path):
    run, _ = saved(tmp_path)
    open(os.path.join(run, ckpt.STATE), "wb").write(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="trainer_state.pt is corrupt or truncated"):
        ckpt.load_checkpoint(run, small_model())


def test_failed_write_leaves_the_old_file_and_no_partial_file(tmp_path, monkeypatch):
    path = str(tmp_path / "f.json")
    ckpt.atomic_write_text(path, "old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_write_text(path, "new" * 1000)
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["f.json"]


def test_failed_checkpoint_keeps_the_previous_one_loadable(tmp_path, monkeypatch):
    run, model = saved(tmp_path)

    def boom(*a, **k):
        raise RuntimeError("killed while pickling")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="killed"):
        ckpt.save_checkpoint(run, small_model(seed=5), {"step": 8})
    monkeypatch.undo()
    other = small_model(seed=1)
    assert ckpt.load_checkpoint(run, other)["step"] == 7
    assert torch.equal(other[0].weight, model[0].weight)
    assert sorted(os.listdir(run)) == [ckpt.MODEL, ckpt.STATE]


def test_kill_between_the_two_moves_rolls_forward(tmp_path, monkeypatch):
    run, _ = saved(tmp_path)
    new = small_model(seed=5)
    real_replace = os.replace

    def replace(src, dst):
        if dst.endswith(ckpt.MODEL):
            raise KeyboardInterrupt  # the process dies after trainer_state.pt moved in
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(run, new, {"step": 8})
    monkeypatch.undo()
    other = small_model(seed=1)
    assert ckpt.load_checkpoint(run, other)["step"] == 8  # the new state and its own weights
    assert torch.equal(other[0].weight, new[0].weight)


def test_run_folder_contents_and_state_loads_with_weights_only(tmp_path):
    run = str(tmp_path / "echo")
    cfg = TrainConfig(steps=6, batch_size=4, tbptt=10, eval_every=3, checkpoint_every=4, log_every=2,
                      progress="off", plot=False)
    Trainer(EchoTask(EchoConfig(hidden_size=4)), cfg, run, run_config={"task": "echo", "train": {"steps": 6}}).fit()
    assert sorted(os.listdir(run)) == ["config.json", "metrics.jsonl", "model.safetensors", "trainer_state.pt"]
    state = torch.load(os.path.join(run, ckpt.STATE), weights_only=True)
    assert state["step"] == 6 and state["position"] == 3 and state["window"] == 2
    assert set(state["optimizer"]) == {"state", "param_groups"}
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert [(r["step"], r["split"]) for r in rows] == [
        (2, "train"), (3, "eval"), (4, "train"), (6, "train"), (6, "eval")]
    assert json.load(open(os.path.join(run, "config.json")))["task"] == "echo"


def test_fresh_run_refuses_to_overwrite_a_checkpoint(tmp_path):
    run = str(tmp_path / "echo")
    cfg = TrainConfig(steps=2, batch_size=2, progress="off", plot=False)
    Trainer(EchoTask(EchoConfig(hidden_size=4)), cfg, run).fit()
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        Trainer(EchoTask(EchoConfig(hidden_size=4)), cfg, run).fit()


def test_load_run_rebuilds_the_trained_model_from_its_folder(tmp_path):
    from safetensors.torch import load_file

    from lstmkit.train import load_run, make_trainer, parse_run_config

    cfg = parse_run_config({"task": "echo", "run_dir": str(tmp_path / "r"), "hidden_size": 5,
                            "train": {"steps": 3, "batch_size": 2, "progress": "off", "plot": False}})
    make_trainer(cfg).fit()
    again, task, model = load_run(str(tmp_path / "r"))
    assert again == cfg and not model.training
    saved_weights = load_file(str(tmp_path / "r" / ckpt.MODEL))
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved_weights[name])
    assert model.core.hidden_size == 5
