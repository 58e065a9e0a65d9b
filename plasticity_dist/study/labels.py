"""What a run is, in the words a study groups runs by: its size, problem, seed and the mitigations it uses
(each with its settings). Learning-rate re-warming is not a `mitigations` section but
`optimizer.schedule=rewarm_cosine`."""

from __future__ import annotations

from typing import Any

from plasticity_dist.study.config import ExperimentConfig
from plasticity_dist.study.config_files import config_to_dict

REWARMING_SCHEDULE = "rewarm_cosine"


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


def study_labels(config: ExperimentConfig) -> dict[str, Any]:
    """What a sweep is grouped by: model size, problem, mitigations (with their settings) and seed."""
    return {"size": config.model.preset, "problem": config.curriculum.problem,
            "mitigations": "+".join(active_mitigations(config)) or "none", "seed": config.seed}
