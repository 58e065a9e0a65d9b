"""Learning-rate schedules as pure functions of the step, so resuming needs no scheduler state."""

from __future__ import annotations

import math

from plasticity_dist.study.config import OptimizerSection


def learning_rate(optimizer: OptimizerSection, step: int, step_in_task: int, task_steps: int) -> float:
    """LR for the optimizer step about to run.

    `constant`: linear warmup over the run's first `warmup_steps`, then constant.
    `rewarm_cosine`: every task warms up again over `warmup_steps`, then decays by a cosine to
    `min_lr_ratio * lr` at the task's last step ("re-warming", as in continual pre-training).
    """
    if optimizer.schedule == "constant":
        return optimizer.lr * min(1.0, (step + 1) / max(1, optimizer.warmup_steps))
    if step_in_task < optimizer.warmup_steps:
        return optimizer.lr * (step_in_task + 1) / optimizer.warmup_steps
    decay_steps = max(1, task_steps - optimizer.warmup_steps)
    progress = min(1.0, (step_in_task - optimizer.warmup_steps) / decay_steps)
    floor = optimizer.min_lr_ratio * optimizer.lr
    return floor + (optimizer.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
