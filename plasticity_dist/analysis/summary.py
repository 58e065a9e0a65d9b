"""The numbers of a report: per-run probe AUCs and their % change, the onset, the training, the mitigations,
how well each diagnostic predicts the AUC rise, the early warnings; the scaling fit and the mitigation groups.

`build_summary` returns what `summary.json` holds (keys fixed in DESIGN.md; extra keys only add).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from plasticity_dist.analysis.auc import auc_pct_change, auc_without_step0
from plasticity_dist.analysis.censoring import observe_onset
from plasticity_dist.analysis.mitigations import active_mitigations, mitigation_groups
from plasticity_dist.analysis.onset import find_onset
from plasticity_dist.analysis.predictors import auc_spearman, mean_over_runs
from plasticity_dist.analysis.runs import ProbeResult, Run, events
from plasticity_dist.analysis.scaling import scaling_fits


def reference_probe(probes: Sequence[ProbeResult]) -> ProbeResult | None:
    """The first post-cycle probe (cycle 1 unless it is missing): the 0 % of every % change."""
    return next((probe for probe in probes if probe.cycle >= 1), None)


def _pct_change(auc: float | None, reference: float | None) -> float | None:
    return None if auc is None or reference is None else auc_pct_change(auc, reference)


def probe_records(probes: Sequence[ProbeResult]) -> list[dict[str, Any]]:
    """One record per probe, the baseline included: the study's AUC and the AUC without step 0, each with its
    % change (null while no post-cycle probe exists, or without 2 eval points after step 0)."""
    reference = reference_probe(probes)
    reference_auc = reference.auc if reference else None
    reference_without_step0 = auc_without_step0(reference.eval_tokens, reference.val_losses) if reference else None
    records = []
    for probe in probes:
        without_step0 = auc_without_step0(probe.eval_tokens, probe.val_losses)
        records.append({
            "cycle": probe.cycle,
            "tokens": probe.tokens,
            "auc": probe.auc,
            "auc_pct_change": _pct_change(probe.auc, reference_auc),
            "auc_without_step0": without_step0,
            "auc_without_step0_pct_change": _pct_change(without_step0, reference_without_step0),
            "tasks_trained": probe.tasks_trained,
            "checkpoint": probe.checkpoint,
        })
    return records


def training_summary(metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Where training got to, from `metrics.jsonl` (empty when nothing was logged)."""
    steps = events(metrics, "step")
    task_ends = events(metrics, "task_end")
    if not steps:
        return {}
    val_losses = [record["val_loss"] for record in task_ends if record.get("val_loss") is not None]
    return {
        "steps": steps[-1]["step"],
        "tokens": steps[-1]["tokens"],
        "tasks_completed": len(task_ends),
        "final_loss": steps[-1]["loss"],
        "last_val_loss": val_losses[-1] if val_losses else None,
        "median_tokens_per_s": statistics.median(record["tokens_per_s"] for record in steps),
    }


def run_summary(run: Run, k: float) -> dict[str, Any]:
    post_cycle = [probe for probe in run.probes if probe.cycle >= 1]
    tasks = [probe.tasks_trained for probe in post_cycle]
    onset = find_onset(tasks, [probe.auc for probe in post_cycle], k=k)
    observation = observe_onset(tasks, [probe.tokens for probe in post_cycle], onset)
    probes = probe_records(run.probes)
    return {
        "run": run.name,
        "model": run.model,
        "non_embedding_params": run.non_embedding_params,
        "problem": run.problem,
        "probes": probes,
        "onset": onset,
        "onset_tokens": observation.tokens if onset is not None else None,
        "onset_observation": None if observation is None else asdict(observation),
        "path": str(run.path),
        "tasks_per_cycle": run.tasks_per_cycle,
        "task_tokens": run.task_tokens,
        "training": training_summary(run.metrics),
        "mitigations": active_mitigations(run.config),
        "diagnostics_auc_spearman": auc_spearman(run.metrics, probes),
        "warnings": [{key: value for key, value in record.items() if key != "event"}
                     for record in events(run.metrics, "warning")],
    }


def build_summary(runs: Sequence[Run], k: float = 3.0) -> dict[str, Any]:
    names = [run.name for run in runs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"runs must have distinct folder names; several are called {', '.join(duplicates)}")
    records = [run_summary(run, k) for run in runs]
    return {
        "runs": records,
        **scaling_fits(records),
        "onset_k": k,
        "diagnostics_auc_spearman_mean": mean_over_runs([record["diagnostics_auc_spearman"] for record in records]),
        "mitigation_groups": mitigation_groups(runs),
    }
