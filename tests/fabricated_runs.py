"""Run directories built by hand as the trainer and its probes leave them, for the report's tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from plasticity_dist.study.config_files import config_to_yaml, load_config

TASKS = ("en", "zh")
TASK_TOKENS = 1000
STEPS_PER_TASK = 4
TOKENS_PER_STEP = 250
BASELINE_AUC = 3.5

# (cycle, task_index, task_end) -> the diagnostics of a `diagnostics` record (logged every 2 steps and at task ends)
Diagnostics = Callable[[int, int, bool], dict[str, Any]]
# task_index -> the `val_losses` and `probe_val_loss` of that task end (every language evaluated)
LanguageLosses = Callable[[int], dict[str, Any]]


def probe_auc(preset: str, cycle: int) -> float:
    """A U-shaped AUC whose minimum comes later for larger models: onset after cycle 2 (100K, 250K) or 4 (600K)."""
    best_cycle = {"100K": 2, "250K": 2, "600K": 4}[preset]
    return 3.0 + 0.05 * (cycle - best_cycle) ** 2


def falling_loss(step: int) -> float:
    return 5.0 - 0.01 * step


def training_records(cycles: int, diagnostics: Diagnostics | None, language_losses: LanguageLosses | None = None,
                     step_loss: Callable[[int], float] = falling_loss) -> list[dict[str, Any]]:
    """`step` (loss `step_loss(step)`), `diagnostics` and `task_end` records of a continual run over TASKS."""
    records, step = [], 0
    for cycle in range(1, cycles + 1):
        for position, task in enumerate(TASKS):
            index = (cycle - 1) * len(TASKS) + position
            where = {"task": task, "task_index": index, "cycle": cycle}
            for step_in_task in range(1, STEPS_PER_TASK + 1):
                step += 1
                records.append({"event": "step", **where, "step": step, "tokens": step * TOKENS_PER_STEP,
                                "loss": step_loss(step), "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 1e4})
                task_end = step_in_task == STEPS_PER_TASK
                if diagnostics is not None and step % 2 == 0:
                    records.append({"event": "diagnostics", "time": 0.0, **where, "step": step,
                                    "tokens": step * TOKENS_PER_STEP, "task_end": task_end,
                                    **diagnostics(cycle, index, task_end)})
            records.append({"event": "task_end", **where, "step": step, "tokens": step * TOKENS_PER_STEP,
                            "val_loss": 4.0, **(language_losses(index) if language_losses else {})})
    return records


def make_run(root: Path, preset: str, cycles: int, problem: str = "continual", with_probes: bool = True, *,
             name: str | None = None, overrides: Sequence[str] = (),
             aucs: Callable[[int], float | None] | None = None, diagnostics: Diagnostics | None = None,
             warnings: Sequence[dict[str, Any]] = (), language_losses: LanguageLosses | None = None,
             step_loss: Callable[[int], float] = falling_loss) -> Path:
    """A run folder as the trainer and its probes leave it: config.yaml, metrics.jsonl, probes/*.json.

    Probes after every cycle have `aucs(cycle)` (default: `probe_auc`; None: the probe diverged after its first
    eval point); the cycle-0 baseline has BASELINE_AUC.
    """
    run_dir = root / (name or f"{problem}-{preset}")
    (run_dir / "probes" / "pending").mkdir(parents=True)
    config_overrides = [f"run_dir={run_dir}", f"model.preset={preset}", f"curriculum.problem={problem}",
                        f"curriculum.task_tokens={TASK_TOKENS}", f"curriculum.cycles={cycles}",
                        "curriculum.tasks=[{name: en}, {name: zh}]", *overrides]
    (run_dir / "config.yaml").write_text(config_to_yaml(load_config(overrides=config_overrides)))
    records = training_records(cycles, diagnostics, language_losses, step_loss) + [{"event": "warning", **warning} for warning in warnings]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    aucs = aucs or (lambda cycle: probe_auc(preset, cycle))
    for cycle in range(cycles + 1) if with_probes else ():
        auc = aucs(cycle) if cycle else BASELINE_AUC
        tasks_trained = cycle * len(TASKS) if problem == "continual" else cycle  # stationary: probe intervals
        losses = [BASELINE_AUC, None, None] if auc is None else [auc + 0.5, auc, auc - 0.25]
        result = {"checkpoint": f"cycle{cycle:03d}", "cycle": cycle, "tasks_trained": tasks_trained,
                  "tokens": cycle * len(TASKS) * TASK_TOKENS, "eval_tokens": [0, 100, 300],
                  "val_losses": losses, "auc": auc, "config_hash": "abc", "seconds": 1.0}
        if auc is None:
            result |= {"diverged": True, "diverged_at_tokens": 100}
        (run_dir / "probes" / f"cycle{cycle:03d}.json").write_text(json.dumps(result))
    (run_dir / "probes" / "pending" / "cycle999.json").write_text("{not a result")
    (run_dir / "probes" / "notes.txt").write_text("not a probe")
    return run_dir
