"""Replicate groups: runs that differ only in their seeds (`SEED_KEYS`), and their statistics.

Per probe point (tasks trained in a continual run, tokens in a stationary one: a cycle holds several where
`probe.every_task_cycles` probes after every task) a group gives each % change as the mean ± standard error over
the runs that have that probe (n), with its 95 % t-interval (n − 1 degrees of freedom; none for one run), and
"within noise" when the mean lies within `noise.noise_multiple(n − 1, m)` standard errors of zero, family-wise
over the group's m compared points. Its onset is the mean ± standard error of its runs' onsets that the probes
pin to an interval, the other runs counted beside it by kind. The scaling fit takes every run on its own.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from scipy import stats

from plasticity_dist.analysis.runs import Run
from plasticity_dist.analysis.settings import settings_key
from plasticity_dist.probe.noise import noise_multiple, within_noise

# the weights', the data order's and the control problem's permutations' (a control study's seed sets all three)
SEED_KEYS = ("seed", "data.seed", "curriculum.control.permutation_seed")
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


def _point_record(probes: Sequence[dict[str, Any]], comparisons: int) -> dict[str, Any]:
    record: dict[str, Any] = {"cycle": probes[0]["cycle"], "tasks_trained": probes[0]["tasks_trained"],
                              "tokens": probes[0]["tokens"], "n": len(probes)}
    for change in CHANGES:
        figures = mean_and_error([probe[change] for probe in probes if probe[change] is not None])
        record |= {f"{change}_mean": figures["mean"], f"{change}_se": figures["se"], f"{change}_ci95": None,
                   f"{change}_within_noise": None}
        if figures["n"] > 1:  # one run has no standard error: no interval, no judgement
            mean, se, t = figures["mean"], figures["se"], noise_multiple(figures["n"] - 1)
            record |= {f"{change}_ci95": [mean - t * se, mean + t * se],
                       f"{change}_within_noise": within_noise(mean, se, noise_multiple(figures["n"] - 1, comparisons))}
    return record


def _onset_record(members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± SE of the runs' onsets pinned to an interval (their best breaks), the other runs counted by kind."""
    kinds = [run["onset_censoring"] for run in members]
    pinned = mean_and_error([run["onset"] for run, kind in zip(members, kinds) if kind == "interval"])
    return {"onset_mean": pinned["mean"], "onset_se": pinned["se"], "onset_interval_n": pinned["n"],
            "onset_right_censored": kinds.count("right"), "onset_left_censored": kinds.count("left"),
            "onset_undetermined": kinds.count("undetermined")}


def group_record(members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A replicate group from its runs' summary records: per probe point (`cycles`, each with its cycle) the
    % changes as mean ± SE with n and their 95 % intervals, and the onset as mean ± SE of the pinned ones."""
    first = members[0]
    position = "tokens" if first["problem"] == "stationary" else "tasks_trained"
    by_position: dict[int, list[dict[str, Any]]] = {}
    for run in members:
        for probe in run["probes"]:
            by_position.setdefault(probe[position], []).append(probe)
    compared = sum(any(probe["cycle"] >= 1 and probe["auc_pct_change"] is not None for probe in probes)
                   for probes in by_position.values())
    comparisons = max(compared - 1, 1)  # the reference point's change is 0 by definition
    return {
        "runs": [run["run"] for run in members], "n": len(members),
        **{key: first[key] for key in ("model", "non_embedding_params", "problem", "mitigations", "onset_unit")},
        "cycles": [_point_record(probes, comparisons) for _, probes in sorted(by_position.items())],
        **_onset_record(members),
    }
