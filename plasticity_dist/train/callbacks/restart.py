"""The callback that starts every task after the first from the run's initial weights with a fresh optimizer
(`curriculum.restart_each_task`): each task is then an independent training of one starting point, as if run
on its own, without a process and a DeepSpeed engine each. A probe over several probe permutations is such a
run, a task per permutation."""

from __future__ import annotations

import torch

from plasticity_dist.engine.params import clear_optimizer_state, set_full
from plasticity_dist.engine.steps import StepRunner
from plasticity_dist.study.config import ExperimentConfig
from plasticity_dist.train.callbacks.base import Callback, LoopPosition, RunContext


class TaskRestart(Callback):
    name = "task_restart"
    priority = 15  # after the diagnostics of the weights the last task ended with, before all else (the step-0 evaluation)

    def __init__(self, step_runner: StepRunner, initial_weights: dict[str, torch.Tensor]) -> None:
        self.engine = step_runner.engine
        self.initial_weights = initial_weights

    @classmethod
    def from_context(cls, context: RunContext) -> TaskRestart | None:
        if not context.config.curriculum.restart_each_task:
            return None
        return cls(context.step_runner, context.initial_weights)

    @classmethod
    def wants_initial_weights(cls, config: ExperimentConfig, is_main: bool) -> bool:
        return config.curriculum.restart_each_task  # on every rank: setting weights is collective

    def on_task_start(self, at: LoopPosition) -> None:
        if at.task.index == 0:
            return
        for name, param in self.engine.module.named_parameters():
            set_full(param, self.initial_weights[name])
        clear_optimizer_state(self.engine)
