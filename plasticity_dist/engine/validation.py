"""Validation loss: the one way a run measures it (task ends, forgetting, probes, the evaluation callback).

Every rank evaluates the same batches (ZeRO-3 forwards are collective).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from plasticity_dist.data.loader import iter_eval_batches
from plasticity_dist.engine.steps import StepRunner
from plasticity_dist.study.config import DataSection


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
