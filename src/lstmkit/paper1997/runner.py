"""Train a long-lag task with lstmkit's Trainer and score it with the paper's own criterion.

    >>> from lstmkit.paper1997.runner import run_task
    >>> row = run_task("adding", "lstm", length=100, time_budget=600)   # doctest: +SKIP
    >>> row["wrong"], row["n_test"], row["sequences"]                    # doctest: +SKIP

Stopping: every ``eval_every`` steps the model is scored on a validation set (never the test
set, except for embedded Reber and task 2a, where the paper's criterion is defined on the
training and test strings themselves). Training stops once that check meets the stop rule, or
when ``time_budget`` seconds or ``max_steps`` steps are spent, whichever comes first; then the
test set of the paper's size (2,560 sequences for Tables 7-9) is scored once.

The adapter's ``should_stop`` hook ends training at the check that met the rule (or ran out of
time), so the weights scored and the steps counted are exactly those of that check.

A task with a curriculum (``task.curriculum``, adding at T = 1000) is first trained at each of
those shorter lengths in turn; a check during that phase scores 512 sequences of the current
length and moves on once at most 1 % are wrong. The stage lives in the adapter, so a resumed
``lstmkit train`` run starts the curriculum again (a trained net passes each stage at its first
check).
"""
from __future__ import annotations

import math
import time
from typing import Any, Optional

import torch
from torch import nn

from ..train.config import TrainConfig
from ..train.task import Task as TrainerTask
from ..train.trainer import Trainer
from . import make_task
from .base import Batch, LagTask
from .model import MODELS, build_model

VALIDATION_OFFSET = 2**31  # validation sets use seed + 2^31: never a test seed, never a batch seed
CHECK_FIRST = 512  # sequences of a no-wrong-allowed check scored before the rest (see PaperTask._check)
CURRICULUM_CHECK, CURRICULUM_WRONG = 512, 0.01  # a curriculum stage is passed at <= 1 % of 512 wrong


class PaperTask(TrainerTask):
    """Adapter: a LagTask as a Trainer task (model factory, batch stream, loss, evaluation).

    Args:
        task: the LagTask.  model: "lstm" | "rnn".  hidden_size: H.
        seed: data seed (batches, validation set, Reber's training strings).
        eval_size: sequences in each validation check.
        stop_wrong: stop once at most this fraction of the validation set is wrong (tasks that
            count wrong sequences; default: the task's, with its stop_max_error margin); tasks
            whose criterion is not a count use task.solved().
        time_budget: seconds after which the next check stops training.
        backend: the recurrent core's backend.
        forget_bias: the LSTM's initial forget-gate bias (default: the task's).
        input_bias, chrono: the LSTM's initial input-gate bias and chrono T_max (default: the
            task's; chrono 0 turns it off).
    """

    def __init__(self, task: LagTask, model: str = "lstm", hidden_size: int = 64, seed: int = 0,
                 eval_size: int = 512, stop_wrong: Optional[float] = None, time_budget: float = math.inf,
                 backend: str = "auto", forget_bias: Optional[float] = None,
                 input_bias: Optional[float] = None, chrono: Optional[int] = None) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        self.task, self.model_kind, self.hidden_size, self.seed = task, model, hidden_size, seed
        self.stop_wrong = task.defaults.stop_wrong if stop_wrong is None else stop_wrong
        self.time_budget, self.backend = time_budget, backend
        self.forget_bias = task.defaults.forget_bias if forget_bias is None else forget_bias
        self.input_bias = task.defaults.input_bias if input_bias is None else input_bias
        self.chrono = task.defaults.chrono if chrono is None else (chrono or None)  # 0 turns it off
        self.validation = self._validation_set(eval_size)
        # the curriculum: (shorter task, its check set) per stage; self.stage indexes the one
        # being trained, len(self.stages) means the task itself
        self.stages = [(t, t.sample(CURRICULUM_CHECK, torch.Generator().manual_seed(VALIDATION_OFFSET + self.seed)))
                       for t in map(task.at_length, task.curriculum)]
        self.stage = 0
        self.stage_steps: list[tuple[int, int]] = []  # (length, steps trained at it) per stage passed
        self.t0: Optional[float] = None  # set at the first training step: the budget excludes
        # one-off start-up costs (torch imports its compiler stack when the optimizer is built)
        self.stop_reason = ""
        self.steps = 0  # optimizer steps taken (one loss() call per step: no TBPTT here)
        self.history: list[dict[str, Any]] = []

    def _validation_set(self, n: int) -> Batch:
        if self.task.readout == "every" and self.task.n_test < 1000:  # reber, long_lag: paper's sets
            return self.task.test_set(self.seed)
        return self.task.sample(n, torch.Generator().manual_seed(VALIDATION_OFFSET + self.seed))

    # --- the Trainer's contract ----------------------------------------------------------
    def build_model(self) -> nn.Module:
        return build_model(self.model_kind, self.task, self.hidden_size, self.backend, self.forget_bias,
                           self.input_bias, self.chrono or 0)

    def global_batch(self, k: int, batch_size: int) -> Batch:
        task = self.stages[self.stage][0] if self.stage < len(self.stages) else self.task
        return task.train_batch(k, batch_size, self.seed)

    def loss(self, model: nn.Module, batch: Batch, state: Any):
        self.steps += 1
        if self.t0 is None:
            self.t0 = time.perf_counter()
        return self.task.loss(model(batch.x, batch.lengths), batch), None

    def count(self, batch: Batch) -> int:
        return batch.size

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if self.stage < len(self.stages):
            return self._evaluate_stage(model)
        metrics = self._check(model)
        self.history.append({"elapsed": self.elapsed(), **metrics})
        if not self.stop_reason:
            if self._stop_rule(metrics):
                self.stop_reason = "solved"
            elif self.elapsed() > self.time_budget:
                self.stop_reason = "time budget"
        return {"loss": metrics["loss"], "wrong_fraction": metrics["wrong"] / metrics["n"]}

    def _check(self, model: nn.Module) -> dict[str, Any]:
        """The validation check. Under a rule that allows no wrong sequence, the set's first
        CHECK_FIRST sequences are scored alone first: if the rule fails on them it fails on the
        whole set, so the rest (4/5 of a 2,560-sequence check) need not be run. The rule is
        unchanged; a check that stops training has scored every sequence."""
        first = CHECK_FIRST
        counted = self.task.kind == "regression" or self.task.readout == "last"  # _stop_rule's count rule
        if not counted or self.stop_wrong > 0 or self.validation.size <= first:
            return score(model, self.task, self.validation)
        head = score(model, self.task, _rows(self.validation, 0, first))
        if not self._stop_rule(head):
            return head
        return score(model, self.task, self.validation)

    def _evaluate_stage(self, model: nn.Module) -> dict[str, float]:
        """A check during the curriculum: on to the next length once at most 1 % of this one's
        check set is wrong (the time budget still ends training)."""
        task, check = self.stages[self.stage]
        metrics = score(model, task, check)
        self.history.append({"elapsed": self.elapsed(), "length": task.T, **metrics})
        if metrics["wrong"] <= CURRICULUM_WRONG * metrics["n"]:
            self.stage_steps.append((task.T, self.steps - sum(n for _, n in self.stage_steps)))
            self.stage += 1
        elif self.elapsed() > self.time_budget:
            self.stop_reason = "time budget"
        return {"loss": metrics["loss"], "wrong_fraction": metrics["wrong"] / metrics["n"], "length": task.T}

    def should_stop(self, metrics: dict[str, float]) -> Any:
        """The Trainer's hook after each evaluation: the reason to stop, or "" to go on."""
        return self.stop_reason

    def elapsed(self) -> float:
        """Seconds since the first training step."""
        return 0.0 if self.t0 is None else time.perf_counter() - self.t0

    def seconds_left(self) -> float:
        """Until the time budget ends training (at the next check after it), for the progress ETA."""
        return max(0.0, self.time_budget - self.elapsed())

    def _stop_rule(self, metrics: dict[str, Any]) -> bool:
        if self.task.kind == "regression" or self.task.readout == "last":
            margin = self.task.defaults.stop_max_error
            if margin is not None and metrics["max_error"] >= margin:
                return False
            return metrics["wrong"] <= self.stop_wrong * metrics["n"]
        return self.task.solved(metrics)


def _rows(batch: Batch, start: int, stop: int) -> Batch:
    """Sequences start … stop - 1 of batch."""
    return Batch(*(None if t is None else t[start:stop] for t in batch))


@torch.no_grad()
def score(model: nn.Module, task: LagTask, batch: Batch, chunk: int = 512) -> dict[str, Any]:
    """The task's evaluation of model on batch, in chunks (the test sets have 2,560 sequences)."""
    was_training = model.training
    model.eval()
    ys = [model(batch.x[i : i + chunk], batch.lengths[i : i + chunk]) for i in range(0, batch.size, chunk)]
    model.train(was_training)
    return task.evaluate(torch.cat(ys), batch)


def run_task(name: str, model: str = "lstm", length: Optional[int] = None, **settings: Any) -> dict[str, Any]:
    """Train model on task name and score it on the paper's test set; returns one result row.

    Settings (all optional; unset ones come from the task's TaskDefaults): seed, hidden_size,
    lr, warmup_steps, batch_size, max_steps, time_budget, eval_every, weight_decay, forget_bias,
    input_bias, chrono (T_max, 0 = off), backend, run_dir, progress. The row holds: task, model, length, seed, steps, sequences (training sequences
    seen), seconds, wrong, n_test, loss, solved, stop_reason, the settings used, and the
    paper's row ("paper") for comparison.
    """
    return train_task(name, model, length, **settings)[0]


def train_task(name: str, model: str = "lstm", length: Optional[int] = None, *, seed: int = 0,
             hidden_size: Optional[int] = None, lr: Optional[float] = None, batch_size: Optional[int] = None,
             max_steps: Optional[int] = None, time_budget: Optional[float] = None,
             eval_every: Optional[int] = None, weight_decay: Optional[float] = None, forget_bias: Optional[float] = None,
             input_bias: Optional[float] = None, chrono: Optional[int] = None, warmup_steps: Optional[int] = None,
             backend: str = "auto", run_dir: Optional[str] = None,
             progress: str = "off") -> tuple[dict[str, Any], nn.Module]:
    """run_task's work; also returns the trained model (a SequenceModel)."""
    task = make_task(name, length)
    d = task.defaults
    hidden_size = hidden_size or d.hidden_size
    batch_size = batch_size or d.batch_size
    budget = d.time_budget if time_budget is None else time_budget
    adapter = PaperTask(task, model, hidden_size, seed, eval_size=d.eval_size, stop_wrong=d.stop_wrong,
                        time_budget=budget, backend=backend, forget_bias=forget_bias, input_bias=input_bias,
                        chrono=chrono)
    config = TrainConfig(
        steps=max_steps or d.max_steps, batch_size=batch_size, optimizer="adamw", lr=lr or d.lr,
        weight_decay=d.weight_decay if weight_decay is None else weight_decay,
        clip_norm=d.clip, schedule=d.schedule, warmup_steps=d.warmup_steps if warmup_steps is None else warmup_steps,
        eval_every=eval_every or d.eval_every, seed=seed, progress=progress, plot=run_dir is not None,
        checkpoint_every=0, log_every=max(1, eval_every or d.eval_every),
    )
    trainer = Trainer(adapter, config, run_dir, run_config=_run_config(name, task, model, length, adapter, config))
    result = trainer.fit()
    seconds = adapter.elapsed()
    steps = result.step
    test = score(trainer.model, task, task.test_set(seed))
    row = {
        "task": name, "describe": task.describe(), "model": model, "length": getattr(task, "T", getattr(task, "p", None)),
        "seed": seed, "steps": steps, "sequences": steps * batch_size, "seconds": round(seconds, 1),
        "wrong": test["wrong"], "n_test": test["n"], "loss": test["loss"], "solved": task.solved(test),
        "stop_reason": adapter.stop_reason or "max steps",
        **{k: v for k, v in test.items() if k not in ("wrong", "n", "loss")},
        "hidden_size": hidden_size, "batch_size": batch_size, "lr": config.lr, "schedule": config.schedule,
        "max_steps": config.steps, "warmup_steps": config.warmup_steps,
        "validation_size": adapter.validation.size, "stop_wrong": adapter.stop_wrong,
        "weight_decay": config.weight_decay, "forget_bias": adapter.forget_bias if model == "lstm" else None,
        "input_bias": adapter.input_bias if model == "lstm" else None,
        "chrono": adapter.chrono if model == "lstm" else None, "eval_every": config.eval_every,
        "curriculum": [list(stage) for stage in adapter.stage_steps],
        "curriculum_sequences": sum(n for _, n in adapter.stage_steps) * batch_size,
        "paper": paper_row(task),
    }
    return row, trainer.model


def _run_config(name: str, task: LagTask, model: str, length: Optional[int], adapter: PaperTask,
                config: TrainConfig) -> dict[str, Any]:
    """config.json of the run folder: the registered task and options that rebuild this model."""
    from ..train.config import to_dict
    from . import ALIASES
    from .trainer_tasks import PaperTaskConfig

    key = ALIASES.get(name.replace("-", "_"), name.replace("-", "_"))
    options = PaperTaskConfig(model=model, length=length or 0, hidden_size=adapter.hidden_size, data_seed=adapter.seed,
                              eval_size=task.defaults.eval_size, backend=adapter.backend,
                              forget_bias=adapter.forget_bias, input_bias=adapter.input_bias, chrono=adapter.chrono or 0)
    return {"task": key, **to_dict(options), "train": to_dict(config)}


# --- reporting ------------------------------------------------------------------------------
def paper_row(task: LagTask) -> dict[str, Any]:
    """The paper's figures for task, as a result row carries them (see PaperRow)."""
    ref = task.reference
    return {"source": ref.source, "result": ref.result, "wrong": ref.wrong, "n_test": ref.n_test,
            "train_sequences": ref.train_sequences, "success_rate": ref.success_rate, "rnn": ref.rnn}


def recipe(row: dict[str, Any]) -> str:
    """The settings a result row was trained with, in words (read from the row itself, so a
    table's notes cannot describe another recipe than the one its rows ran)."""
    parts = [f"{row['hidden_size']} {'cells' if row.get('model', 'lstm') == 'lstm' else 'units'}"]
    if row.get("chrono"):
        parts.append(f"chrono initialization of the gate biases (T_max = {row['chrono']})")
    else:
        if row.get("forget_bias") is not None:
            parts.append(f"forget bias {row['forget_bias']:g}")
        if row.get("input_bias") is not None:
            parts.append(f"input bias {row['input_bias']:g}")
    optimizer = "AdamW" if row.get("weight_decay") else "Adam"
    lr = f"{optimizer} lr {row['lr']:g}"
    if row.get("weight_decay"):
        lr += f" (weight decay {row['weight_decay']:g})"
    if row.get("warmup_steps"):
        lr += f", warm-up over {row['warmup_steps']:,} steps"
    if row.get("schedule") == "cosine":
        lr += f", cosine decay over {row['max_steps']:,} steps"
    parts += [lr, f"batch {row['batch_size']}"]
    stages = row.get("curriculum") or []
    if stages:
        parts.append("trained first at " + ", ".join(f"T = {T} ({steps:,} steps)" for T, steps in stages)
                     + f", then at T = {row['length']}")
    check = f"a check of {row['validation_size']:,} validation sequences"
    if row.get("eval_every"):
        check += f" every {row['eval_every']:,} steps"
    parts.append(check)
    return ", ".join(parts)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Several seeds of one (task, model) → one row: trials solved, median figures."""
    import statistics

    first = rows[0]
    solved = [r for r in rows if r["solved"]]
    return {
        "task": first["task"], "describe": first["describe"], "model": first["model"], "length": first["length"],
        "trials": len(rows), "solved_trials": len(solved), "seeds": [r["seed"] for r in rows],
        "wrong": [r["wrong"] for r in rows], "n_test": first["n_test"],
        "loss": statistics.median(r["loss"] for r in rows),
        "sequences": statistics.median(r["sequences"] for r in rows),
        "sequences_solved": statistics.median(r["sequences"] for r in solved) if solved else None,
        "curriculum_sequences": statistics.median(r.get("curriculum_sequences", 0) for r in rows),
        "seconds": round(sum(r["seconds"] for r in rows), 1),
        "seconds_max": max(r["seconds"] for r in rows), "paper": first["paper"], "runs": rows,
    }


def _wrong_cell(s: dict[str, Any]) -> str:
    w = s["wrong"]
    if len(w) == 1:
        pct = 100.0 * w[0] / s["n_test"]
        return f"{w[0]} / {s['n_test']:,} ({pct:.2f} %)"
    if min(w) == max(w):
        return f"{w[0]} / {s['n_test']:,} in every trial"
    return f"{min(w)}–{max(w)} / {s['n_test']:,}"


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    """Our rows (LSTM and plain RNN) and the paper's, one block per task, as Markdown."""
    head = ("| task | model | solved | wrong (test) | test loss | training sequences | wall time | paper |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for s in summaries:
        paper = s["paper"]
        ref = f"{paper['result']} ({paper['source']})" if s["model"] == "lstm" else (paper.get("rnn") or "—")
        seqs = s["sequences_solved"] if s["solved_trials"] else s["sequences"]
        seq_cell = f"{int(seqs):,}" + ("" if s["solved_trials"] else " (not solved)")
        if s.get("curriculum_sequences"):
            seq_cell += f" ({int(s['curriculum_sequences']):,} of them shorter)"
        if s["model"] == "lstm" and paper.get("train_sequences"):
            seq_cell += f" vs paper {paper['train_sequences']:,}"
        loss = f"{s['loss']:.4f}" + (f" (baseline {s['runs'][0]['baseline']:.4f})" if "baseline" in s["runs"][0] else "")
        lines.append(f"| {s['describe']} | {s['model'].upper()} | {s['solved_trials']}/{s['trials']} | {_wrong_cell(s)} | "
                     f"{loss} | {seq_cell} | {s['seconds']:.0f} s | {ref} |")
    return "\n".join(lines)
