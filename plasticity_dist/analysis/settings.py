"""Which runs share their settings: a run's resolved config as canonical JSON, less the keys a comparison ignores."""

from __future__ import annotations

import json
from collections.abc import Sequence

from plasticity_dist.study.config import PROBE_SCHEDULING_KEYS, ExperimentConfig
from plasticity_dist.study.config_files import config_to_dict

# Where a run lives and runs its probes, what it measures and logs, how many seeds the study runs of it and
# which setting it is a sweep's value of: none of these change its numbers.
PLACEMENT_KEYS = ("run_dir", "resume", "replicates", "sweep", "tensorboard", "wandb", "log_every", "diagnostics",
                  "early_warning", "forgetting", *(f"probe.{key}" for key in PROBE_SCHEDULING_KEYS))


def settings_key(config: ExperimentConfig, ignored: Sequence[str]) -> str:
    """The config without PLACEMENT_KEYS and the dotted `ignored` keys, as canonical JSON: equal keys mean runs
    that differ only in what was ignored."""
    settings = config_to_dict(config)
    for key in (*PLACEMENT_KEYS, *ignored):
        *sections, leaf = key.split(".")
        node = settings
        for section in sections:
            node = node[section]
        node.pop(leaf, None)
    return json.dumps(settings, sort_keys=True)
