"""The numbers of a report: per-run probe AUCs and their % change, the onset, the training, forgetting, the
mitigations, how well each diagnostic predicts the AUC rise, the early warnings; the replicate groups, the
scaling fits on them and the mitigation groups.

`build_summary` returns what `summary.json` holds (keys fixed in DESIGN.md; extra keys only add).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from plasticity_dist.analysis.censoring import observation_of
from plasticity_dist.analysis.forgetting import forgetting_summary
from plasticity_dist.analysis.mitigations import (mitigation_groups, mitigation_rankings, swept_settings,
                                                  treatment_settings)
from plasticity_dist.analysis.onset import estimate_onset
from plasticity_dist.analysis.predictors import mean_over_runs, spearman_fields
from plasticity_dist.analysis.replicates import group_record, replicate_groups
from plasticity_dist.analysis.runs import ProbeResult, Run, events
from plasticity_dist.analysis.scaling import scaling_fits
from plasticity_dist.probe.auc import auc_pct_change, auc_without_step0, spacing_of_rule
from plasticity_dist.probe.noise import change_noise, within_noise
from plasticity_dist.probe.results import reference_probe
from plasticity_dist.study.labels import active_mitigations


def _pct_change(auc: float | None, reference: float | None) -> float | None:
    return None if auc is None or reference is None else auc_pct_change(auc, reference)


def reference_fields(reference: ProbeResult | None, reference_tasks: int) -> dict[str, Any]:
    """A run's `reference_probe` ({checkpoint, cycle, tasks_trained}) and, when it is missing, `reference_reason`."""
    if reference is None:
        return {"reference_probe": None, "reference_reason": f"no probe at the end of cycle 1 (tasks_trained "
                                                             f"{reference_tasks}): % changes not computed"}
    return {"reference_probe": {"checkpoint": reference.checkpoint, "cycle": reference.cycle,
                                "tasks_trained": reference.tasks_trained}, "reference_reason": None}


def _auc_without_step0(probe: ProbeResult) -> float | None:
    """By the rule of the probe's AUC; null for a diverged probe, as its AUC is."""
    if probe.diverged:
        return None
    return auc_without_step0(probe.eval_tokens, probe.val_losses, spacing_of_rule(probe.auc_rule),
                             probe.auc_from_point)


def probe_records(probes: Sequence[ProbeResult], positions: Sequence[float],
                  reference: ProbeResult | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One record per probe, the baseline included: the study's AUC and the AUC without step 0, each with its
    % change against the `reference` probe (null while it does not exist, or without
    2 eval points after step 0) and whether that change is within the run's probe noise (null for the baseline,
    the reference itself, or an unknown σ); each AUC's % change against the same probe from freshly initialised
    weights, the run's own cycle-0 probe (`<name>_vs_fresh_pct`, null without one); and that noise per AUC (null
    with too few post-cycle probes).
    `positions`: the post-cycle probes' tasks (continual) or tokens (stationary)."""
    series = {"auc": [probe.auc for probe in probes],
              "auc_without_step0": [_auc_without_step0(probe) for probe in probes]}
    records = [{"cycle": probe.cycle, "tokens": probe.tokens, "tasks_trained": probe.tasks_trained,
                "checkpoint": probe.checkpoint, "diverged": probe.diverged} for probe in probes]
    noise: dict[str, Any] = {}
    fresh = next((probe for probe in probes if probe.cycle == 0), None)
    for name, values in series.items():
        reference_value = values[probes.index(reference)] if reference else None
        fresh_value = values[probes.index(fresh)] if fresh else None
        post_cycle = [(probe, value) for probe, value in zip(probes, values) if probe.cycle >= 1]
        finite = [(position, value) for position, (_, value) in zip(positions, post_cycle) if value is not None]
        judged = [probe for probe, value in post_cycle if probe is not reference and value is not None]
        known = reference_value is not None and len(finite) > 0
        noise[name] = change_noise(*zip(*finite), reference_value, len(judged)) if known else None
        figures = noise[name]
        for probe, value, record in zip(probes, values, records):
            change = _pct_change(value, reference_value)
            record |= {name: value, f"{name}_pct_change": change, f"{name}_pct_change_within_noise": within_noise(
                change, figures.sigma_pct_change, figures.multiple) if probe in judged and figures else None,
                f"{name}_vs_fresh_pct": _pct_change(value, fresh_value)}
    return records, {name: None if figures is None else asdict(figures) for name, figures in noise.items()}


def training_summary(metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Where training got to, from `metrics.jsonl` (empty when nothing was logged)."""
    steps = events(metrics, "step")
    task_ends = events(metrics, "task_end")
    if not steps:
        return {}
    val_losses = [record["val_loss"] for record in task_ends if record.get("val_loss") is not None]
    last_cycle = [record["loss"] for record in steps if record["cycle"] == steps[-1]["cycle"]]
    return {
        "steps": steps[-1]["step"],
        "tokens": steps[-1]["tokens"],
        "tasks_completed": len(task_ends),
        "final_loss": steps[-1]["loss"],
        "last_cycle_loss": statistics.fmean(last_cycle),  # the mean of the logged training losses
        "last_val_loss": val_losses[-1] if val_losses else None,
        "median_tokens_per_s": statistics.median(record["tokens_per_s"] for record in steps),
    }


def run_summary(run: Run, k: float, swept: Sequence[str] = ()) -> dict[str, Any]:
    """A run's record in summary.json; onsets of stationary runs are in tokens, of continual runs in tasks."""
    post_cycle = [probe for probe in run.probes if probe.cycle >= 1]
    tasks = [probe.tasks_trained for probe in post_cycle]
    tokens = [probe.tokens for probe in post_cycle]
    unit, positions = ("tokens", tokens) if run.problem == "stationary" else ("tasks", tasks)
    aucs = [math.inf if probe.diverged else probe.auc for probe in post_cycle]
    estimate = estimate_onset(positions, aucs, k=k)
    observation = observation_of(estimate.low, estimate.high, None if unit == "tokens" else tasks, tokens)
    reference = reference_probe(run.probes, run.reference_tasks)
    probes, noise = probe_records(run.probes, positions, reference)
    return {
        "run": run.name,
        "model": run.model,
        "non_embedding_params": run.non_embedding_params,
        "problem": run.problem,
        "probes": probes,
        "auc_from_tokens": run.probes[0].eval_tokens[run.probes[0].auc_from_point] if run.probes else 0,
        "probe_permutations": len(run.probes[0].permutation_aucs or [None]) if run.probes else 1,
        **reference_fields(reference, run.reference_tasks),
        "noise": noise,
        "onset": estimate.onset,
        "onset_unit": unit,
        "onset_interval": None if estimate.low is None else [estimate.low, estimate.high],
        "onset_censoring": estimate.censoring,
        "onset_reason": estimate.reason,
        "onset_observation": None if observation is None else observation.to_json(),
        "path": str(run.path),
        "tasks_per_cycle": run.tasks_per_cycle,
        "task_tokens": run.task_tokens,
        "training": training_summary(run.metrics),
        "forgetting": forgetting_summary(run),
        "mitigations": active_mitigations(run.config),
        "treatment_settings": treatment_settings(run.config, swept),
        **spearman_fields(run.metrics, probes),
        "warnings": [{key: value for key, value in record.items() if key != "event"}
                     for record in events(run.metrics, "warning")],
    }


def build_summary(runs: Sequence[Run], k: float = 3.0) -> dict[str, Any]:
    names = [run.name for run in runs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"runs must have distinct folder names; several are called {', '.join(duplicates)}")
    swept = swept_settings(runs)
    records = {run.name: run_summary(run, k, swept) for run in runs}
    groups = [group_record([records[name] for name in names]) for names in replicate_groups(runs)]
    return {
        "runs": list(records.values()),
        "replicate_groups": groups,
        **scaling_fits(list(records.values()), groups),
        "onset_k": k,
        "diagnostics_auc_spearman_mean": mean_over_runs(list(records.values())),
        "mitigation_groups": mitigation_groups(runs),
        "swept_settings": swept,
        "mitigation_rankings": mitigation_rankings(runs, records, groups),
    }
