"""Forgetting beside plasticity, from the trainer's task-end evaluations (`val_losses`, `probe_val_loss`).

- The loss matrix: one row per task end, one column per training language, and the probe language's loss
  zero-shot (before any probe training).
- Backward transfer per cycle of a continual run: at the cycle's end, each language trained in the cycle
  (but the last) has its loss then minus its loss at the end of its own task in that cycle. Positive: it was
  forgotten; negative: the languages after it helped it. The cycle's figure is the mean over those languages.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from plasticity_dist.analysis.runs import Run, events


def task_end_losses(metrics: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task ends that evaluated every language, as rows of the loss matrix (in training order)."""
    return [{key: record[key] for key in ("task_index", "task", "cycle", "tokens", "val_losses", "probe_val_loss")}
            for record in events(metrics, "task_end") if "val_losses" in record]


def backward_transfer(rows: Sequence[dict[str, Any]], tasks_per_cycle: int) -> list[dict[str, Any]]:
    """Per complete cycle (`tasks_per_cycle` task ends): each earlier language's loss at the cycle's end minus
    its loss when last trained, and their mean (null when a loss is missing)."""
    by_cycle: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_cycle.setdefault(row["cycle"], []).append(row)
    transfer = []
    for cycle, cycle_rows in sorted(by_cycle.items()):
        if len(cycle_rows) < tasks_per_cycle:
            continue
        end = cycle_rows[-1]["val_losses"]
        changes = {}
        for row in cycle_rows[:-1]:
            before, after = row["val_losses"].get(row["task"]), end.get(row["task"])
            changes[row["task"]] = None if before is None or after is None else after - before
        known = [change for change in changes.values() if change is not None]
        transfer.append({"cycle": cycle, "mean_loss_change": statistics.fmean(known) if known else None,
                         "loss_change": changes})
    return transfer


def forgetting_summary(run: Run) -> dict[str, Any] | None:
    """summary.json's `forgetting` of a run: the loss matrix, backward transfer per cycle (continual runs) and
    the probe language's name; None when the trainer logged no evaluation of every language."""
    rows = task_end_losses(run.metrics)
    if not rows:
        return None
    return {"languages": list(rows[0]["val_losses"]), "probe_language": run.config.probe.dataset, "task_ends": rows,
            "backward_transfer": backward_transfer(rows, run.tasks_per_cycle) if run.problem == "continual" else []}
