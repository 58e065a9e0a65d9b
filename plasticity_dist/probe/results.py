"""Probe results as the rest of the package reads them: `RUN/probes/<tag>.json`, the reference probe every
% change is against. Light on purpose: the trainer's early warning reads them too."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.probe.auc import LINEAR_AUC_RULE

PROBE_FIELDS = ("checkpoint", "cycle", "tasks_trained", "tokens", "eval_tokens", "val_losses", "auc", "config_hash")
LATER_FIELDS = ("diverged", "auc_rule", "auc_from_point", "permutation_aucs")  # older results: the defaults


@dataclass(frozen=True)
class ProbeResult:
    """One `RUN/probes/<tag>.json`: cycle 0 is the baseline from the untrained initial weights."""

    checkpoint: str
    cycle: int
    tasks_trained: int
    tokens: int
    eval_tokens: list[int]
    val_losses: list[float | None]  # null from the first non-finite loss of a diverged probe on
    auc: float | None  # None: diverged
    config_hash: str  # of the probe settings that change its numbers
    path: Path
    diverged: bool = False
    auc_rule: str = LINEAR_AUC_RULE  # which AUC (probe/auc.py)
    auc_from_point: int = 0  # the AUC's first eval point (`probe.auc_from_point`; 0: the whole curve)
    permutation_aucs: list[float | None] | None = None  # a control probe's permutations' own AUCs, when several


def read_probe(path: Path) -> ProbeResult:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"probe result {path} is not valid JSON: {error}") from None
    missing = [name for name in PROBE_FIELDS if name not in record]
    if missing:
        raise ValueError(f"probe result {path} lacks field(s): {', '.join(missing)}")
    if (record["auc"] is None) != bool(record.get("diverged")):
        raise ValueError(f"probe result {path}: auc is {record['auc']} but diverged is {record.get('diverged')}; "
                         "a diverged probe, and only it, has a null AUC")
    return ProbeResult(**{name: record[name] for name in PROBE_FIELDS},
                       **{name: record[name] for name in LATER_FIELDS if name in record}, path=path)


def read_probes(run_dir: Path) -> list[ProbeResult]:
    """Every finished probe of a run (`RUN/probes/*.json`; the `pending/` queue is not a result)."""
    probes = [read_probe(path) for path in sorted(RunLayout(run_dir).probes.glob("*.json")) if path.is_file()]
    return sorted(probes, key=lambda probe: (probe.tokens, probe.cycle))


def reference_probe(probes: Sequence[ProbeResult], reference_tasks: int) -> ProbeResult | None:
    """The probe at the end of cycle 1, after `reference_tasks` tasks (`curriculum.reference_tasks`): the 0 % of
    every % change. None when it is missing: no other probe stands in for it."""
    return next((probe for probe in probes if probe.cycle == 1 and probe.tasks_trained == reference_tasks), None)
