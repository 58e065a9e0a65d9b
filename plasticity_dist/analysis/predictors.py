"""Which training diagnostics foretell plasticity loss: the Spearman rank correlation, over cycles, between a
diagnostic's value at the end of a cycle and the AUC % change of the probe taken after that cycle."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from plasticity_dist.analysis.correlation import spearman
from plasticity_dist.analysis.runs import events

# The totals the trainer logs in its `diagnostics` records (per-layer values add a `_l<i>` suffix).
DIAGNOSTICS = ("dormant_ratio", "srank", "effective_rank", "feature_norm", "param_norm", "update_ratio",
               "grad_norm", "dist_from_init", "attn_entropy")


def diagnostic_value(record: dict[str, Any], name: str) -> float | None:
    """A diagnostic of a record as a float; None when it is missing, null or not finite."""
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def task_end_diagnostics(metrics: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The diagnostics taken at the last step of each task, by task index (the last one logged wins)."""
    return {record["task_index"]: record for record in events(metrics, "diagnostics") if record.get("task_end")}


def auc_spearman(metrics: Sequence[dict[str, Any]], probes: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Per diagnostic: rho between its end-of-cycle value and that cycle's probe AUC % change, over the
    post-cycle probes whose cycle end has the diagnostic (None below 3 such cycles or for constant values)."""
    at_task_end = task_end_diagnostics(metrics)
    # a probe follows the last task of its cycle: task index tasks_trained - 1
    cycle_ends = [(at_task_end[probe["tasks_trained"] - 1], probe["auc_pct_change"]) for probe in probes
                  if probe["cycle"] >= 1 and probe["auc_pct_change"] is not None
                  and probe["tasks_trained"] - 1 in at_task_end]
    correlations = {}
    for name in DIAGNOSTICS:
        pairs = [(value, change) for record, change in cycle_ends
                 if (value := diagnostic_value(record, name)) is not None]
        correlations[name] = spearman([value for value, _ in pairs], [change for _, change in pairs])
    return correlations


def mean_over_runs(per_run: Sequence[dict[str, float | None]]) -> dict[str, dict[str, Any]]:
    """Per diagnostic: the mean of the runs' rho where it is defined, and over how many runs."""
    means = {}
    for name in DIAGNOSTICS:
        rhos = [correlations[name] for correlations in per_run if correlations.get(name) is not None]
        means[name] = {"rho": statistics.fmean(rhos) if rhos else None, "runs": len(rhos)}
    return means
