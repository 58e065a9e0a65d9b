"""Reading a run directory for analysis: its resolved config, training metrics and probe results."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.model.table import preset_rows
from plasticity_dist.probe.results import ProbeResult, read_probes
from plasticity_dist.study.config import ExperimentConfig
from plasticity_dist.study.config_files import load_config
from plasticity_dist.study.curriculum import reference_tasks, tasks_per_cycle
from plasticity_dist.train.metrics import read_metrics

@dataclass(frozen=True)
class Run:
    path: Path
    name: str
    model: str
    non_embedding_params: int
    problem: str  # "continual" | "stationary" | "control"
    tasks_per_cycle: int
    task_tokens: int
    reference_tasks: int  # tasks trained at the reference probe, the end of cycle 1
    probes: list[ProbeResult]  # in training order (by tokens seen, then cycle)
    metrics: list[dict[str, Any]]
    config: ExperimentConfig  # resolved; sections an older run lacks hold their defaults (mitigations off)


def events(metrics: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The `metrics.jsonl` records of one event (`step`, `task_end`, `diagnostics`, `warning`), in order."""
    return [record for record in metrics if record.get("event") == name]


@functools.cache
def non_embedding_params(preset: str) -> int:
    """Exact non-embedding parameter count of a preset (independent of vocabulary and context)."""
    counts = {row["name"]: row["non_embedding_params"] for row in preset_rows(vocab_size=257, seq_len=1)}
    return counts[preset]


def check_comparable(probes: Sequence[ProbeResult]) -> None:
    """Refuse probes made under different probe configs or eval grids: their AUCs are not comparable."""
    groups: dict[tuple[str, tuple[int, ...]], list[str]] = {}
    for probe in probes:
        groups.setdefault((probe.config_hash, tuple(probe.eval_tokens)), []).append(probe.path.name)
    if len(groups) > 1:
        described = "; ".join(f"{', '.join(files)} (config_hash {config_hash}, eval_tokens {list(grid)})"
                              for (config_hash, grid), files in groups.items())
        folder = probes[0].path.parent
        raise ValueError(f"{folder} mixes probes made under different probe configs or eval grids, whose AUCs "
                         f"are not comparable: {described}; re-probe them under one config (probe --force) "
                         "or move the odd ones out")


def load_run(run_dir: str | Path) -> Run:
    """A run directory as written by the trainer and its probes; not a run (no config.yaml) is an error, and
    so are probes that cannot be compared."""
    path = Path(run_dir)
    layout = RunLayout(path)
    if not layout.config.is_file():
        raise FileNotFoundError(f"{path} is not a run directory: it has no {layout.config.name}")
    config = load_config(layout.config)
    probes = read_probes(path)
    check_comparable(probes)
    return Run(
        path=path,
        name=path.resolve().name,
        model=config.model.preset,
        non_embedding_params=non_embedding_params(config.model.preset),
        problem=config.curriculum.problem,
        tasks_per_cycle=tasks_per_cycle(config),
        task_tokens=config.curriculum.task_tokens,
        reference_tasks=reference_tasks(config),
        probes=probes,
        metrics=read_metrics(layout.metrics) if layout.metrics.is_file() else [],
        config=config,
    )
