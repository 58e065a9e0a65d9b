"""The runs that differ only in their mitigations (study/labels.py names what each one used)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from plasticity_dist.analysis.runs import Run
from plasticity_dist.analysis.settings import settings_key
from plasticity_dist.study.labels import active_mitigations

MITIGATION_KEYS = ("mitigations", "optimizer.schedule")


def mitigation_groups(runs: Sequence[Run]) -> list[list[str]]:
    """Names of the runs that differ only in their mitigations, one list per group (groups of 2+ runs with
    at least two different sets of mitigations)."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[settings_key(run.config, MITIGATION_KEYS)].append(run)
    return [[run.name for run in group] for group in groups.values()
            if len({tuple(active_mitigations(run.config)) for run in group}) > 1]
