"""The mitigations a run used (from its resolved config) and the runs that differ only in them.

Learning-rate re-warming is not a `mitigations` section but `optimizer.schedule=rewarm_cosine`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from plasticity_dist.analysis.runs import Run
from plasticity_dist.analysis.settings import settings_key
from plasticity_dist.config import ExperimentConfig, config_to_dict

REWARMING_SCHEDULE = "rewarm_cosine"
MITIGATION_KEYS = ("mitigations", "optimizer.schedule")


def _label(name: str, settings: dict[str, Any]) -> str:
    """`name(key=value, ...)`, numbers in their shortest form."""
    shown = ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                      for key, value in settings.items())
    return f"{name}({shown})"


def active_mitigations(config: ExperimentConfig) -> list[str]:
    """Each enabled mitigation with its hyperparameters, e.g. `shrink_perturb(shrink=0.4, noise_std=0.001)`."""
    labels = [_label(name, {key: value for key, value in section.items() if key != "enabled"})
              for name, section in config_to_dict(config.mitigations).items() if section["enabled"]]
    if config.optimizer.schedule == REWARMING_SCHEDULE:
        labels.append(_label("rewarming", {"warmup_steps": config.optimizer.warmup_steps,
                                           "min_lr_ratio": config.optimizer.min_lr_ratio}))
    return labels


def mitigation_groups(runs: Sequence[Run]) -> list[list[str]]:
    """Names of the runs that differ only in their mitigations, one list per group (groups of 2+ runs with
    at least two different sets of mitigations)."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[settings_key(run.config, MITIGATION_KEYS)].append(run)
    return [[run.name for run in group] for group in groups.values()
            if len({tuple(active_mitigations(run.config)) for run in group}) > 1]
