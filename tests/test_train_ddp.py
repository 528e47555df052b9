"""Distributed data parallel: 2 processes under torchrun (gloo, CPU), each on half of every
global batch, reach the same weights as 1 process on the whole batch."""
from __future__ import annotations

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

import lstmkit
from lstmkit.cli import main
from lstmkit.train.toy import EchoConfig, EchoTask

SRC = os.path.dirname(os.path.dirname(os.path.abspath(lstmkit.__file__)))
ARGS = ["train", "--task", "echo", "--hidden_size", "6", "--backend", "reference",
        "--train.steps", "6", "--train.batch_size", "8", "--train.tbptt", "10", "--train.lr", "0.01",
        "--train.eval_every", "3", "--train.plot", "false", "--train.progress", "off", "--train.threads", "1"]


def run(cmd, run_dir):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    res = subprocess.run([*cmd, *ARGS, "--run_dir", run_dir], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_two_ranks_match_one_process_on_the_combined_batch(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert main([*ARGS, "--run_dir", one]) == 0  # 1 process, in this one
    res = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "lstmkit"], two)
    assert res.stdout.count("run folder") == 1  # rank 0 alone reports (and writes)
    a, b = load_file(os.path.join(one, "model.safetensors")), load_file(os.path.join(two, "model.safetensors"))
    assert a.keys() == b.keys()
    torch.manual_seed(0)  # the Trainer seeds with train.seed = 0 before building the model
    start = EchoTask(EchoConfig(hidden_size=6, backend="reference")).build_model().state_dict()
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-3  # training moved the weights
    for k in a:
        # Gradients are averaged in a different order (two half-batch means, then their mean):
        # float32 rounding only.
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    state = torch.load(os.path.join(two, "trainer_state.pt"), weights_only=True)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2 and state["step"] == 6
