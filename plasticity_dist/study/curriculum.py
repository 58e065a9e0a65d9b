"""The training problem as a list of tasks: the continual cycles, the stationary mixed stream, or the control
problem (one text under a fresh token permutation per task).

Every problem becomes the same thing for the trainer: an ordered list of `Task`s, each a set of shard
datasets (with mixing weights), a token budget, an optional token permutation, and whether a probe request
follows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasticity_dist.study.config import ExperimentConfig, TaskSpec
from plasticity_dist.study.errors import ConfigError


@dataclass(frozen=True)
class Task:
    index: int  # position in the whole run, from 0
    cycle: int  # continual: the cycle, from 1; stationary: the probe interval, from 1
    name: str
    datasets: tuple[str, ...]  # what it trains on: its own language first, then any replayed ones
    weights: tuple[float, ...] | None
    tokens: int
    # continual: a cycle end, or any task of the first probe.every_task_cycles cycles; stationary: every interval
    probe_after: bool
    val_datasets: tuple[str, ...]  # whose validation splits measure it: its own language (continual), all (stationary)
    permutation: int | None = None  # seed of the token permutation of its data and validation (data/permutation.py)

    def checkpoint_tag(self, step: int) -> str:
        """Checkpoint name at optimizer step `step` of the run: sorts by time, reads well in a listing."""
        return f"step{step:09d}-task{self.index:04d}-cycle{self.cycle:03d}-{self.name}"


def dataset_path(root: str, dataset: str) -> str:
    """A task's dataset folder; relative names resolve under `data.root`."""
    path = Path(dataset)
    return str(path if path.is_absolute() else Path(root) / path)


def _task_dataset(config: ExperimentConfig, spec: TaskSpec) -> str:
    return dataset_path(config.data.root, spec.dataset or spec.name)


def languages(config: ExperimentConfig) -> dict[str, str]:
    """Every training language (a task spec's name) and its dataset folder, in curriculum order."""
    return {spec.name: _task_dataset(config, spec) for spec in config.curriculum.tasks}


def _replay_mix(config: ExperimentConfig, own: str, earlier: list[str]) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """A task's datasets and mixing weights: its own alone, or with `mitigations.replay` its own at 1 − fraction
    and each earlier language at an equal share of the fraction."""
    replay = config.mitigations.replay
    if not replay.enabled or not earlier or replay.fraction == 0:
        return (own,), None
    share = replay.fraction / len(earlier)
    return (own, *earlier), (1 - replay.fraction, *(share for _ in earlier))


def _continual_tasks(config: ExperimentConfig) -> list[Task]:
    curriculum = config.curriculum
    tasks: list[Task] = []
    trained: list[str] = []  # datasets trained so far, in first-trained order
    for cycle in range(1, curriculum.cycles + 1):
        for position, spec in enumerate(curriculum.tasks):
            own = _task_dataset(config, spec)
            datasets, weights = _replay_mix(config, own, [dataset for dataset in trained if dataset != own])
            tasks.append(Task(
                index=len(tasks),
                cycle=cycle,
                name=spec.name,
                datasets=datasets,
                weights=weights,
                tokens=spec.tokens or curriculum.task_tokens,
                probe_after=position == len(curriculum.tasks) - 1 or cycle <= config.probe.every_task_cycles,
                val_datasets=(own,),
                permutation=spec.permutation,
            ))
            if own not in trained:
                trained.append(own)
    return tasks


def _stationary_tasks(config: ExperimentConfig) -> list[Task]:
    curriculum = config.curriculum
    if curriculum.total_tokens is None or curriculum.probe_every_tokens is None:
        raise ConfigError("curriculum.problem=stationary needs curriculum.total_tokens and curriculum.probe_every_tokens")
    if config.mitigations.replay.enabled:
        raise ConfigError("mitigations.replay replays earlier tasks of a continual run; curriculum.problem=stationary "
                          "already mixes every language")
    datasets = tuple(_task_dataset(config, spec) for spec in curriculum.tasks)
    weights = tuple(curriculum.mix_weights) if curriculum.mix_weights else None
    intervals = math.ceil(curriculum.total_tokens / curriculum.probe_every_tokens)
    return [
        Task(
            index=i,
            cycle=i + 1,
            name="mix",
            datasets=datasets,
            weights=weights,
            tokens=min(curriculum.probe_every_tokens, curriculum.total_tokens - i * curriculum.probe_every_tokens),
            probe_after=True,
            val_datasets=datasets,
        )
        for i in range(intervals)
    ]


_TASK_PERMUTATIONS, _PROBE_PERMUTATION = 11, 12  # first entropy word of each derivation: the streams never meet


def _derived_seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, dtype=np.uint32)[0])


def task_permutation_seed(permutation_seed: int, task_index: int) -> int:
    """The seed of task `task_index`'s token permutation in a control run with `control.permutation_seed`."""
    return _derived_seed(_TASK_PERMUTATIONS, permutation_seed, task_index)


def _control_tasks(config: ExperimentConfig) -> list[Task]:
    """`cycles` x `control.tasks_per_cycle` tasks on the one dataset, task i under permutation
    `task_permutation_seed(control.permutation_seed, i)`; a probe after each cycle (and after every task of the
    first `probe.every_task_cycles` cycles)."""
    curriculum = config.curriculum
    control = curriculum.control
    (spec,) = curriculum.tasks
    dataset = _task_dataset(config, spec)
    tasks = []
    for index in range(curriculum.cycles * control.tasks_per_cycle):
        cycle, position = divmod(index, control.tasks_per_cycle)
        tasks.append(Task(
            index=index,
            cycle=cycle + 1,
            name=f"{spec.name}-perm{index:04d}",
            datasets=(dataset,),
            weights=None,
            tokens=spec.tokens or curriculum.task_tokens,
            probe_after=position == control.tasks_per_cycle - 1 or cycle < config.probe.every_task_cycles,
            val_datasets=(dataset,),
            permutation=task_permutation_seed(control.permutation_seed, index),
        ))
    return tasks


def probe_permutation(config: ExperimentConfig, index: int = 0) -> int | None:
    """The seed of the token permutation a run's probes train and validate under: the control problem's probe
    permutation `index` (of `control.probe_permutations`), which no task of the run uses; None for the other
    problems."""
    if config.curriculum.problem != "control":
        return None
    seed = config.curriculum.control.permutation_seed
    return _derived_seed(_PROBE_PERMUTATION, seed, *([index] if index else []))


def probe_permutation_count(config: ExperimentConfig) -> int:
    """How many probes, each under its own permutation, one probe of a checkpoint averages (1 but for control)."""
    return config.curriculum.control.probe_permutations if config.curriculum.problem == "control" else 1


def tasks_per_cycle(config: ExperimentConfig) -> int:
    """Tasks in one cycle: one per language (continual), the control's `tasks_per_cycle`, one interval (stationary)."""
    problem = config.curriculum.problem
    if problem == "stationary":
        return 1
    return config.curriculum.control.tasks_per_cycle if problem == "control" else len(config.curriculum.tasks)


def reference_tasks(config: ExperimentConfig) -> int:
    """Tasks trained when the study's reference probe (the 0 % of every % change) is taken, at the end of cycle 1."""
    return tasks_per_cycle(config)


_PROBLEMS = {"continual": _continual_tasks, "stationary": _stationary_tasks, "control": _control_tasks}


def build_tasks(config: ExperimentConfig) -> list[Task]:
    """Every task of the run in training order."""
    return _PROBLEMS[config.curriculum.problem](config)
