"""Validation loss: the one way a run measures it (task ends, forgetting, probes), and the callback that
measures it during a task at fixed steps (a probe's curve) or every N steps.

Every rank evaluates the same batches (ZeRO-3 forwards are collective); the main process writes the records.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np

from plasticity_dist.callbacks import Callback, LoopPosition, RunContext
from plasticity_dist.config import DataSection, EvaluationSection
from plasticity_dist.data.loader import iter_eval_batches
from plasticity_dist.metrics import MetricsLog
from plasticity_dist.steps import StepRunner


def eval_steps(num_steps: int, points: int, spacing: str = "linear") -> list[int]:
    """`points` steps from 0 to `num_steps` inclusive, evenly spaced (`linear`) or step 0 and then evenly
    spaced in log from step 1 (`log`); fewer when rounding makes some coincide."""
    if spacing == "linear":
        grid = np.linspace(0, num_steps, points)
    elif spacing == "log":
        grid = np.concatenate([[0], np.geomspace(1, num_steps, points - 1)])
    else:
        raise ValueError(f"eval spacing must be linear or log, got {spacing!r}")
    return sorted({int(round(x)) for x in grid})


def validation_loss(step_runner: StepRunner, datasets: tuple[str, ...], tokens: int, data: DataSection,
                    permutation: int | None = None) -> float | None:
    """Mean loss over the first `tokens` of the datasets' validation splits (`<dataset>/val`), split evenly
    between them, under token permutation `permutation` if given; None when a split is missing."""
    val_dirs = [Path(dataset) / "val" for dataset in datasets]
    if not all(path.is_dir() for path in val_dirs):
        return None
    return step_runner.evaluate(itertools.chain.from_iterable(
        iter_eval_batches(val_dir, seq_len=data.seq_len, batch_size=data.micro_batch_size,
                          max_tokens=tokens // len(val_dirs), permutation=permutation)
        for val_dir in val_dirs
    ))


class Validator:
    """Validation losses of the model in training: task ends, forgetting and the evaluation callback ask here.
    The same question twice at one point of the loop (a probe's last curve point, then its task end) is
    measured once; a point is (task index, step), and nothing changes the weights between two such questions
    (the evaluation callback runs after every callback that does)."""

    def __init__(self, step_runner: StepRunner, data: DataSection) -> None:
        self.step_runner = step_runner
        self.data = data
        self.last: tuple[tuple[Any, ...], float | None] | None = None

    def loss(self, datasets: tuple[str, ...], tokens: int, point: tuple[int, int],
             permutation: int | None = None) -> float | None:
        """`validation_loss` of the weights at `point` = (task index, step)."""
        question = (tuple(datasets), tokens, point, permutation)
        if self.last is None or self.last[0] != question:
            self.last = (question, validation_loss(self.step_runner, datasets, tokens, self.data, permutation))
        return self.last[1]


class PeriodicEvaluation(Callback):
    """The validation loss of the task in progress at `evaluation.points` fixed steps (step 0 included) and
    every `evaluation.every_steps`. The task's points so far are its state, saved with every checkpoint, so
    a resumed run ends with the same curve as an uninterrupted one."""

    name = "evaluation"

    def __init__(self, section: EvaluationSection, validator: Validator, tokens_per_step: int,
                 metrics: MetricsLog) -> None:
        self.section = section
        self.validator = validator
        self.tokens_per_step = tokens_per_step
        self.metrics = metrics
        self.curve: list[list[Any]] = []  # [step, tokens, val_loss] of the task in progress

    @classmethod
    def from_context(cls, context: RunContext) -> PeriodicEvaluation | None:
        section = context.config.evaluation
        if not (section.points or section.every_steps):
            return None
        return cls(section, context.validator, context.plan.tokens_per_step, context.metrics)

    def on_task_start(self, at: LoopPosition) -> None:
        self.curve = []
        if self.section.points:  # step 0 of the task: the weights it starts from
            self._evaluate(at, at.step - 1, at.tokens - self.tokens_per_step)

    def after_optimizer_step(self, at: LoopPosition) -> None:
        every = self.section.every_steps
        at_point = self.section.points and at.step_in_task in self._points(at.task_steps)
        if at_point or (every and at.step % every == 0):
            self._evaluate(at, at.step, at.tokens)

    def _points(self, task_steps: int) -> list[int]:
        return eval_steps(task_steps, self.section.points, self.section.spacing)

    def _evaluate(self, at: LoopPosition, step: int, tokens: int) -> None:
        loss = self.validator.loss(at.task.val_datasets, self.section.tokens, (at.task.index, step), at.task.permutation)
        self.curve.append([step, tokens, loss])
        self.metrics.write({"event": "eval", "time": time.time(), "task": at.task.name, "task_index": at.task.index,
                            "cycle": at.task.cycle, "step": step, "tokens": tokens, "val_loss": loss})

    def state_dict(self) -> dict[str, Any]:
        return {"curve": self.curve}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curve = state.get("curve", [])
