"""Early warning of learning stagnation, so a long run tells its owner before the budget is spent.

At every task end (main process only) two checks run on what the run has written so far:
- the task's training-loss improvement against the same task's in the earliest earlier cycle that has one
  (the run's first task, trained from random weights, is never a reference);
- every probe result after the reference probe (the end of cycle 1, which the report's % change is against)
  against the reference's AUC: it warns when the change exceeds `auc_increase_pct` and lies outside the probe
  noise by the report's rule (`probe.noise`: σ from the run's probes so far, t family-wise over the changes
  the run will make), so it never calls a change the report would mark "within noise" a decline.
A stagnation is a warning line in the log and a `warning` record in `RUN/metrics.jsonl`.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plasticity_dist.common.logging import get_logger
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.probe.auc import auc_pct_change
from plasticity_dist.probe.noise import ChangeNoise, change_noise, within_noise
from plasticity_dist.probe.results import ProbeResult, read_probes, reference_probe
from plasticity_dist.study.config import EarlyWarningSection
from plasticity_dist.study.curriculum import reference_tasks
from plasticity_dist.train.callbacks.base import Callback, LoopPosition, RunContext
from plasticity_dist.train.metrics import MetricsLog, read_metrics, task_record


def loss_improvement(losses: Sequence[float], window: int) -> float | None:
    """(first - last) / first of the mean losses over the first and last `window` records; each window is
    at most half the records, so the two never overlap. None with fewer than 2 records."""
    size = min(window, len(losses) // 2)
    if size == 0:
        return None
    first = statistics.fmean(losses[:size])
    return (first - statistics.fmean(losses[-size:])) / first


def task_losses(records: Sequence[dict[str, Any]]) -> dict[tuple[int, int, str], list[float]]:
    """The logged training losses of each task, keyed by (task_index, cycle, name), in logging order."""
    losses: dict[tuple[int, int, str], list[float]] = defaultdict(list)
    for record in records:
        if record.get("event") == "step":
            losses[record["task_index"], record["cycle"], record["task"]].append(record["loss"])
    return losses


class StagnationMonitor(Callback):
    """Warns once per stagnating task and once per probe whose AUC rose past the threshold."""

    name = "early_warning"
    priority = 50

    def __init__(self, section: EarlyWarningSection, run_dir: Path, metrics: MetricsLog, is_main: bool,
                 reference_tasks: int, comparisons: int) -> None:
        """`reference_tasks`: tasks trained at the reference probe (`curriculum.reference_tasks`); `comparisons`:
        the % changes the run's probes will make against it, judged together as the report judges them."""
        self.section = section
        self.reference_tasks = reference_tasks
        self.comparisons = comparisons
        self.run_dir = Path(run_dir)
        self.metrics = metrics
        self.is_main = is_main
        # Probe results arrive asynchronously and stay on disk, so the ones already warned about are
        # remembered across resumes. A task ends once per run (a task redone after a resume had its
        # records, warning included, truncated), so the loss check needs no memory.
        self.warned_probes: set[str] = set()

    @classmethod
    def from_context(cls, context: RunContext) -> StagnationMonitor | None:
        section = context.config.early_warning
        if not section.enabled:
            return None
        probes = sum(task.probe_after for task in context.tasks)
        return cls(section, context.layout.root, context.metrics, context.is_main, reference_tasks(context.config),
                   comparisons=max(probes - 1, 1))

    def on_task_end(self, at: LoopPosition) -> None:
        if self.is_main:
            self._check_loss_improvement(at)
            self._check_probes(at)

    def _check_loss_improvement(self, at: LoopPosition) -> None:
        metrics_path = RunLayout(self.run_dir).metrics
        losses = task_losses(read_metrics(metrics_path) if metrics_path.is_file() else [])
        window, ratio = self.section.window, self.section.loss_improvement_ratio
        improvement = loss_improvement(losses.get((at.task.index, at.task.cycle, at.task.name), []), window)
        earlier = sorted(
            (cycle, value) for (index, cycle, name), task_loss in losses.items()
            if name == at.task.name and index != 0 and cycle < at.task.cycle
            and (value := loss_improvement(task_loss, window)) is not None
        )
        if improvement is None or not earlier or earlier[0][1] <= 0:
            return
        reference_cycle, reference = earlier[0]
        threshold = ratio * reference
        if improvement < threshold:
            self._warn(at, "loss_improvement", improvement, reference, threshold,
                       f"task {at.task.name} (cycle {at.task.cycle}): loss improved {improvement:.1%} vs "
                       f"{reference:.1%} in cycle {reference_cycle} (threshold {ratio:g}x): learning is slowing")

    def _check_probes(self, at: LoopPosition) -> None:
        probes = read_probes(self.run_dir)
        reference = reference_probe(probes, self.reference_tasks)
        if reference is None:
            return
        threshold = None if reference.diverged else reference.auc * (1 + self.section.auc_increase_pct / 100)
        noise = None if reference.diverged else self._noise(probes, reference.auc)
        for probe in probes:  # the baseline and the probes before the reference trained less: no sign of stagnation
            if probe.tasks_trained < reference.tasks_trained or probe.checkpoint in self.warned_probes:
                continue
            where = f"probe after task {probe.tasks_trained}, cycle {probe.cycle} ({probe.checkpoint})"
            if probe.diverged:  # the strongest loss of plasticity, the reference itself included
                message = f"{where} diverged: its validation loss turned NaN or infinite: plasticity is lost"
            elif threshold is not None and probe.auc > threshold and noise is not None and not within_noise(
                    auc_pct_change(probe.auc, reference.auc), noise.sigma_pct_change, noise.multiple):
                message = (f"{where}: AUC {probe.auc:.4f} is {auc_pct_change(probe.auc, reference.auc):+.1f}% vs "
                           f"{reference.auc:.4f} at the end of cycle {reference.cycle} "
                           f"(threshold +{self.section.auc_increase_pct:g}%, outside the noise: t·σ = "
                           f"{noise.multiple * noise.sigma_pct_change:.2f}%): plasticity is declining")
            else:
                continue
            self.warned_probes.add(probe.checkpoint)
            self._warn(at, "probe_diverged" if probe.diverged else "probe_auc", probe.auc, reference.auc, threshold,
                       message, probe_cycle=probe.cycle, probe_tasks_trained=probe.tasks_trained)

    def _noise(self, probes: Sequence[ProbeResult], reference: float) -> ChangeNoise | None:
        """The report's noise of the % changes from the finite post-cycle probes so far (None below 3)."""
        finite = [probe for probe in probes if probe.cycle >= 1 and not probe.diverged]
        return change_noise([probe.tasks_trained for probe in finite], [probe.auc for probe in finite], reference,
                            self.comparisons)

    def _warn(self, at: LoopPosition, kind: str, value: float | None, reference: float | None,
              threshold: float | None, message: str, **extra: Any) -> None:
        """Log and record a warning; a figure a diverged probe lacks is null."""
        get_logger().warning(f"early warning: {message}")
        self.metrics.write(task_record(
            "warning", at.task, kind=kind, step=at.step, tokens=at.tokens,
            **{key: None if figure is None else float(figure)
               for key, figure in (("value", value), ("reference", reference), ("threshold", threshold))},
            message=message, **extra,
        ))

    def state_dict(self) -> dict[str, Any]:
        return {"warned_probes": sorted(self.warned_probes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warned_probes = set(state.get("warned_probes", []))
