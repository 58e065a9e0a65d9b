"""The callback that measures the validation loss during a task at fixed steps (a probe's curve) or every N
steps; the main process writes the records."""

from __future__ import annotations

from typing import Any, NamedTuple

from plasticity_dist.engine.validation import Validator, eval_steps
from plasticity_dist.study.config import EvaluationSection
from plasticity_dist.train.callbacks.base import Callback, LoopPosition, RunContext
from plasticity_dist.train.metrics import MetricsLog, task_record


class EvalPoint(NamedTuple):
    """One point of a task's validation curve: after `step` steps of the run (`tokens` seen), the loss (None
    where the validation split is missing)."""

    step: int
    tokens: int
    val_loss: float | None


class PeriodicEvaluation(Callback):
    """The validation loss of the task in progress at `evaluation.points` fixed steps (step 0 included) and
    every `evaluation.every_steps`. The task's points so far are its state, saved with every checkpoint, so
    a resumed run ends with the same curve as an uninterrupted one."""

    name = "evaluation"
    priority = 40  # after the mitigations: it measures the weights a step ends with, as the task end does

    def __init__(self, section: EvaluationSection, validator: Validator, tokens_per_step: int,
                 metrics: MetricsLog) -> None:
        self.section = section
        self.validator = validator
        self.tokens_per_step = tokens_per_step
        self.metrics = metrics
        self.curve: list[EvalPoint] = []  # of the task in progress

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
        self.curve.append(EvalPoint(step, tokens, loss))
        self.metrics.write(task_record("eval", at.task, step=step, tokens=tokens, val_loss=loss))

    def state_dict(self) -> dict[str, Any]:
        return {"curve": [list(point) for point in self.curve]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curve = [EvalPoint(*point) for point in state.get("curve", [])]
