"""Replicate groups: runs that differ only in their seeds (`seed`, `data.seed`), and their statistics.

Per probe point (tasks trained in a continual run, tokens in a stationary one: a cycle holds several where
`probe.every_task_cycles` probes after every task) a group gives each % change as the mean ± standard error over
the runs that have that probe (n), "within noise" when the mean lies within `noise.noise_multiple(n − 1)`
standard errors of zero. Its onset is the mean ± standard error of its runs' exact onsets, with the censored ones
counted beside it. Every group enters the scaling fits once, at the geometric mean of its runs' onsets
(`combine_observations`): a run alone is a group of one.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from collections.abc import Sequence
from typing import Any

from scipy import stats

from plasticity_dist.analysis.censoring import OnsetObservation, combine_observations
from plasticity_dist.analysis.noise import within_noise
from plasticity_dist.analysis.runs import Run
from plasticity_dist.analysis.settings import settings_key

SEED_KEYS = ("seed", "data.seed")
CHANGES = ("auc_pct_change", "auc_without_step0_pct_change")


def replicate_groups(runs: Sequence[Run]) -> list[list[str]]:
    """Names of the runs that differ only in their seeds, one list per group, every run in exactly one group
    (groups and their runs in the order given)."""
    groups: dict[str, list[str]] = {}
    for run in runs:
        groups.setdefault(settings_key(run.config, SEED_KEYS), []).append(run.name)
    return list(groups.values())


def mean_and_error(values: Sequence[float]) -> dict[str, Any]:
    """`mean`, its standard error `se` (None for one value) and `n`."""
    return {"mean": statistics.fmean(values) if values else None,
            "se": float(stats.sem(values)) if len(values) > 1 else None, "n": len(values)}


def _point_record(probes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    record: dict[str, Any] = {"cycle": probes[0]["cycle"], "tasks_trained": probes[0]["tasks_trained"],
                              "tokens": probes[0]["tokens"], "n": len(probes)}
    for change in CHANGES:
        figures = mean_and_error([probe[change] for probe in probes if probe[change] is not None])
        record |= {f"{change}_mean": figures["mean"], f"{change}_se": figures["se"],
                   f"{change}_within_noise": within_noise(figures["mean"], figures["se"], figures["n"] - 1)}
    return record


def _onset_record(members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    observations = [OnsetObservation(**run["onset_observation"]) for run in members if run["onset_observation"]]
    exact = mean_and_error([run["onset"] for run in members
                            if run["onset_observation"] and run["onset_observation"]["censoring"] == "exact"])
    combined = combine_observations(observations)
    return {"onset_mean": exact["mean"], "onset_se": exact["se"], "onset_exact_n": exact["n"],
            "onset_right_censored": sum(o.censoring == "right" for o in observations),
            "onset_left_censored": sum(o.censoring == "left" for o in observations),
            "onset_unjudged": len(members) - len(observations),
            "onset_observation": None if combined is None else asdict(combined)}


def group_record(members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A replicate group from its runs' summary records: per probe point (`cycles`, each with its cycle) the
    % changes as mean ± SE with n, the onset as mean ± SE of the exact ones, and the group's onset observation
    for the scaling fits."""
    first = members[0]
    position = "tokens" if first["problem"] == "stationary" else "tasks_trained"
    by_position: dict[int, list[dict[str, Any]]] = {}
    for run in members:
        for probe in run["probes"]:
            by_position.setdefault(probe[position], []).append(probe)
    return {
        "runs": [run["run"] for run in members], "n": len(members),
        **{key: first[key] for key in ("model", "non_embedding_params", "problem", "mitigations", "onset_unit")},
        "cycles": [_point_record(probes) for _, probes in sorted(by_position.items())],
        **_onset_record(members),
    }
