"""The evaluation at every task end: the loss on the task's validation split and, with `forgetting.enabled`, on
every training language's and zero-shot on the probe language's. It runs first at a task end, on the weights
the task ended with, before any callback changes them."""

from __future__ import annotations

from typing import Any

from plasticity_dist.engine.validation import Validator
from plasticity_dist.study.config import ExperimentConfig
from plasticity_dist.study.curriculum import dataset_path, languages, probe_permutation
from plasticity_dist.train.callbacks.base import Callback, LoopPosition, RunContext
from plasticity_dist.train.metrics import MetricsLog, task_record


class TaskEndEvaluation(Callback):
    """Writes the `task_end` record of every task."""

    name = "task_end"
    priority = 0
    saves_state = False

    def __init__(self, config: ExperimentConfig, validator: Validator, metrics: MetricsLog) -> None:
        self.config = config
        self.validator = validator
        self.metrics = metrics

    @classmethod
    def from_context(cls, context: RunContext) -> TaskEndEvaluation:
        return cls(context.config, context.validator, context.metrics)

    def on_task_end(self, at: LoopPosition) -> None:
        task = at.task
        val_loss = self.validator.loss(task.val_datasets, self.config.data.val_tokens, (task.index, at.step),
                                       task.permutation)
        record = task_record("task_end", task, step=at.step, tokens=at.tokens, val_loss=val_loss)
        if self.config.forgetting.enabled:
            record |= self.languages(task.index, at.step)
        self.metrics.write(record)

    def languages(self, task_index: int, step: int) -> dict[str, Any]:
        """`val_losses`: the loss on every training language's validation split, and `probe_val_loss`: on the
        probe language's (under the probe's permutation in a control run), zero-shot (no update);
        `forgetting.val_tokens` each, null where a split is missing."""
        tokens = self.config.forgetting.val_tokens
        probe_dataset = dataset_path(self.config.data.root, self.config.probe.dataset)
        return {"val_losses": {name: self.validator.loss((dataset,), tokens, (task_index, step))
                               for name, dataset in languages(self.config).items()},
                "probe_val_loss": self.validator.loss((probe_dataset,), tokens, (task_index, step),
                                                      probe_permutation(self.config))}
