"""The settings runs sweep, and the runs that differ only in their treatment.

A treatment is a run's mitigations with its LR schedule's settings (re-warming is `optimizer.schedule=
rewarm_cosine`, with its own warmup and floor) and the values of the swept settings (those a run names in
`sweep`, e.g. `optimizer.weight_decay`), so a sweep of one setting compares as one row per value. Runs of one seed that differ
only in their treatment are compared run by run (`mitigation_groups`); the replicate groups that differ only in
it are ranked with their seeds pooled (`mitigation_rankings`). What mitigations a run used is
`study/labels.py`'s `active_mitigations`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from plasticity_dist.analysis.replicates import SEED_KEYS, mean_and_error
from plasticity_dist.analysis.runs import Run
from plasticity_dist.analysis.settings import settings_key
from plasticity_dist.study.config import ExperimentConfig, setting_value
from plasticity_dist.study.labels import active_mitigations

SCHEDULE_KEYS = ("optimizer.schedule", "optimizer.warmup_steps", "optimizer.min_lr_ratio")
MITIGATION_KEYS = ("mitigations", *SCHEDULE_KEYS)


def swept_settings(runs: Sequence[Run]) -> list[str]:
    """The settings some run sweeps (its config's `sweep`), sorted."""
    return sorted({run.config.sweep for run in runs if run.config.sweep})


def treatment_settings(config: ExperimentConfig, swept: Sequence[str]) -> dict[str, Any]:
    """The run's values of the settings a treatment holds besides its mitigations: the schedule's and the swept."""
    return {key: setting_value(config, key) for key in (*SCHEDULE_KEYS, *swept)}


def shown_settings(records: Sequence[dict[str, Any]], swept: Sequence[str]) -> list[str]:
    """The treatment settings a comparison of these runs' summary records shows beside their mitigations: every
    swept one, and a schedule setting where runs of the same mitigations differ in it (re-warming's label
    states its own)."""
    by_mitigations: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_mitigations[tuple(record["mitigations"])].append(record)
    return [key for key in SCHEDULE_KEYS if any(len({record["treatment_settings"][key] for record in same}) > 1
                                               for same in by_mitigations.values())] + list(swept)


def _treatment_groups(runs: Sequence[Run], ignored: Sequence[str]) -> list[list[Run]]:
    """Runs equal but for their treatment and the `ignored` keys, in groups of two or more treatments."""
    swept = swept_settings(runs)
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[settings_key(run.config, (*MITIGATION_KEYS, *swept, *ignored))].append(run)
    treatment = lambda run: (tuple(active_mitigations(run.config)), tuple(treatment_settings(run.config, swept).values()))
    return [group for group in groups.values() if len({treatment(run) for run in group}) > 1]


def mitigation_groups(runs: Sequence[Run]) -> list[list[str]]:
    """Names of the runs that differ only in their treatment, one list per group."""
    return [[run.name for run in group] for group in _treatment_groups(runs, ())]


def _loss_costs(names: Sequence[str], reference: Sequence[str], runs: dict[str, Run],
                records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The % change of each run's last-cycle training loss against the reference run of the same seeds (which
    share its initial weights, data order and permutations), as mean ± SE over those pairs."""
    seeds = lambda name: tuple(setting_value(runs[name].config, key) for key in SEED_KEYS)
    loss = lambda name: records[name]["training"].get("last_cycle_loss")
    reference_loss = {seeds(name): loss(name) for name in reference}
    pairs = [(loss(name), reference_loss.get(seeds(name))) for name in names]
    return mean_and_error([100 * (value / base - 1) for value, base in pairs if value is not None and base is not None])


def _ranked_row(group: dict[str, Any], records: Sequence[dict[str, Any]], tasks: int) -> dict[str, Any]:
    """One treatment (a replicate group) of a ranking: its % changes at `tasks`, onset and training loss."""
    probes = [probe for record in records for probe in record["probes"] if probe["tasks_trained"] == tasks]
    changes = mean_and_error([probe["auc_pct_change"] for probe in probes if probe["auc_pct_change"] is not None])
    return {
        "runs": group["runs"], "n": group["n"], "mitigations": group["mitigations"],
        "treatment_settings": records[0]["treatment_settings"],
        "auc_pct_change": changes,
        "auc_vs_fresh_pct": mean_and_error([probe["auc_vs_fresh_pct"] for probe in probes
                                            if probe["auc_vs_fresh_pct"] is not None]),
        **{key: group[key] for key in ("onset_unit", "onset_mean", "onset_se", "onset_interval_n",
                                       "onset_right_censored", "onset_left_censored", "onset_undetermined")},
        "last_cycle_loss": mean_and_error([record["training"]["last_cycle_loss"] for record in records
                                           if record["training"].get("last_cycle_loss") is not None]),
    }


def mitigation_rankings(runs: Sequence[Run], records: dict[str, dict[str, Any]],
                        replicate_groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replicate groups that differ only in their treatment (one of them of several seeds), each ranking one row
    per treatment with its seeds pooled: the AUC % change (and % vs fresh init) at the last probe every run has,
    as mean ± SE, the onset as its replicate group gives it, and the mean training loss of the last cycle with
    its cost, the % change against the reference run of the same seeds, the reference being the treatment
    without mitigations that holds a run not made by a sweep. Rows by mean % change, lowest first."""
    by_name = {run.name: run for run in runs}
    rankings = []
    for members in _treatment_groups(runs, SEED_KEYS):
        common = set.intersection(*({probe["tasks_trained"] for probe in records[run.name]["probes"]
                                     if probe["cycle"] >= 1} for run in members))
        tasks = max(common, default=None)
        names = {run.name for run in members}
        groups = [group for group in replicate_groups if group["runs"][0] in names]  # each within one treatment
        if all(group["n"] == 1 for group in groups):
            continue  # no seeds to pool: the comparisons run by run say it all
        rows = [_ranked_row(group, [records[name] for name in group["runs"]], tasks) for group in groups]
        references = [row["runs"] for row in rows
                      if not row["mitigations"] and any(not by_name[name].config.sweep for name in row["runs"])]
        reference = references[0] if len(references) == 1 else None
        for row in rows:
            row["loss_cost_pct"] = None if reference is None else _loss_costs(row["runs"], reference, by_name, records)
        rows.sort(key=lambda row: math.inf if row["auc_pct_change"]["mean"] is None else row["auc_pct_change"]["mean"])
        rankings.append({"runs": [run.name for run in members], "tasks_trained": tasks, "reference": reference,
                         "settings": shown_settings([records[name] for name in names], swept_settings(runs)),
                         "treatments": rows})
    return rankings
