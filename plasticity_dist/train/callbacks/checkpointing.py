"""Checkpoints and the probes they feed, as a callback (OLMo-core's `CheckpointerCallback`): a checkpoint every
`checkpoint.every_steps` steps inside a task and at every task end; at a probed task end (a cycle's end) one
kept for good, whose probe is then queued. It runs last, so what it saves holds every other callback's final
state for the step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from plasticity_dist.engine.checkpoint import Checkpointer
from plasticity_dist.probe.scheduler import ProbeScheduler
from plasticity_dist.train.callbacks.base import Callback, LoopPosition, RunContext


class Checkpointing(Callback):
    """Saves the run's checkpoints and requests their probes; the trainer also calls `save` on a stop signal,
    `save_for_probe` for the baseline probe of the initial weights, and `finish` when the run is done."""

    name = "checkpointing"
    priority = 100
    saves_state = False

    def __init__(self, checkpointer: Checkpointer, probe_scheduler: ProbeScheduler | None, every_steps: int,
                 contents: Callable[[], tuple[dict[str, Any], dict[str, torch.Tensor]]]) -> None:
        self.checkpointer = checkpointer
        self.probe_scheduler = probe_scheduler
        self.every_steps = every_steps
        self.contents = contents

    @classmethod
    def from_context(cls, context: RunContext) -> Checkpointing:
        return cls(context.checkpointer, context.probe_scheduler, context.config.checkpoint.every_steps,
                   context.checkpoint_contents)

    def on_step_end(self, at: LoopPosition) -> None:
        if self.every_steps and at.step % self.every_steps == 0 and not at.is_task_end:
            self.save(at.task.checkpoint_tag(at.step))

    def on_task_end(self, at: LoopPosition) -> None:
        tag = at.task.checkpoint_tag(at.step)
        if at.task.probe_after:
            self.save_for_probe(tag, probe_cycle=at.task.cycle)
        else:
            self.save(tag)
            self.poll()  # a probe that died is resubmitted within a cycle, not only at its end

    def save(self, tag: str) -> Path:
        """A checkpoint that retention may prune (keep_last)."""
        trainer_state, rank_tensors = self.contents()
        return self.checkpointer.save(tag, trainer_state, keep=False, rank_tensors=rank_tensors)

    def save_for_probe(self, tag: str, probe_cycle: int) -> None:
        """A checkpoint kept for good, then its probe queued; training goes on at once."""
        trainer_state, rank_tensors = self.contents()
        self.checkpointer.save(tag, {**trainer_state, "probe_cycle": probe_cycle}, keep=True, rank_tensors=rank_tensors)
        if self.probe_scheduler is not None:
            self.probe_scheduler.request(tag)

    def poll(self) -> None:
        """Resubmit the probes that died (with this process or a previous one)."""
        if self.probe_scheduler is not None:
            self.probe_scheduler.poll()

    def finish(self) -> None:
        """Wait for the run's probes, then slim the checkpoints whose probes finished after the last save."""
        if self.probe_scheduler is not None:
            self.probe_scheduler.drain()
            self.checkpointer.slim_probed()
