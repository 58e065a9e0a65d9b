"""Which training diagnostics foretell plasticity loss: the Spearman rank correlation, over cycles, between a
diagnostic's value at the end of a cycle and the AUC % change of the probe taken after that cycle (a diverged
probe's as +inf: it ranks above every finite change), with its interval (`correlation.py`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from plasticity_dist.analysis.correlation import RankCorrelation, mean_interval, rank_correlation
from plasticity_dist.analysis.runs import events

# The totals the trainer logs in its `diagnostics` records (per-layer values add a `_l<i>` suffix).
DIAGNOSTICS = ("dormant_ratio", "srank", "effective_rank", "feature_norm", "param_norm", "update_ratio",
               "grad_norm", "dist_from_init", "attn_entropy", "grad_dormant_ratio", "saturated_ratio",
               "duplicate_ratio", "input_drift", "spectral_norm", "stable_rank", "hessian_top_eig")


def diagnostic_value(record: dict[str, Any], name: str) -> float | None:
    """A diagnostic of a record as a float; None when it is missing, null or not finite."""
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def task_end_diagnostics(metrics: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The diagnostics taken at the last step of each task, by task index (the last one logged wins)."""
    return {record["task_index"]: record for record in events(metrics, "diagnostics") if record.get("task_end")}


def _auc_change(probe: dict[str, Any]) -> float | None:
    return math.inf if probe["diverged"] else probe["auc_pct_change"]


def auc_spearman(metrics: Sequence[dict[str, Any]], probes: Sequence[dict[str, Any]]) -> dict[str, RankCorrelation]:
    """Per diagnostic: rho between its end-of-cycle value and that cycle's probe AUC % change, with its interval,
    over the post-cycle probes whose cycle end has the diagnostic (None below MIN_POINTS such cycles or for
    constant values)."""
    at_task_end = task_end_diagnostics(metrics)
    # a probe follows the last task of its cycle: task index tasks_trained - 1
    cycle_ends = [(at_task_end[probe["tasks_trained"] - 1], change) for probe in probes
                  if probe["cycle"] >= 1 and (change := _auc_change(probe)) is not None
                  and probe["tasks_trained"] - 1 in at_task_end]
    correlations = {}
    for name in DIAGNOSTICS:
        pairs = [(value, change) for record, change in cycle_ends
                 if (value := diagnostic_value(record, name)) is not None]
        correlations[name] = rank_correlation([value for value, _ in pairs], [change for _, change in pairs])
    return correlations


def spearman_fields(metrics: Sequence[dict[str, Any]], probes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A run's summary keys: `diagnostics_auc_spearman` (rho per diagnostic) and, beside it,
    `diagnostics_auc_spearman_ci` ({ci, n, reason}: the interval, the cycles, why rho is null)."""
    correlations = auc_spearman(metrics, probes)
    return {"diagnostics_auc_spearman": {name: correlation.rho for name, correlation in correlations.items()},
            "diagnostics_auc_spearman_ci": {
                name: {"ci": None if correlation.ci is None else list(correlation.ci), "n": correlation.n,
                       "reason": correlation.reason} for name, correlation in correlations.items()}}


def mean_over_runs(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per diagnostic, over the run records (`spearman_fields`) where rho is given: the mean rho, the interval of
    that mean, and over how many runs and cycles."""
    means = {}
    for name in DIAGNOSTICS:
        given = [(run["diagnostics_auc_spearman"][name], run["diagnostics_auc_spearman_ci"][name]["n"])
                 for run in runs if run["diagnostics_auc_spearman"][name] is not None]
        rhos, ns = [rho for rho, _ in given], [n for _, n in given]
        means[name] = {"rho": statistics.fmean(rhos) if rhos else None, "runs": len(rhos),
                       "ci": list(mean_interval(rhos, ns)) if rhos else None, "n": sum(ns)}
    return means
