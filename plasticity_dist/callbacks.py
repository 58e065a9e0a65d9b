"""The one interface optional behaviour hangs off the training loop by (diagnostics, mitigations, early
warning), in the manner of OLMo-core's callbacks: the loop calls every hook on every rank, in this order:

    on_task_start  (a task begins from its first step; not when a run resumes inside a task)
    on_step_start  ─┐
    loss_term       │ after each training micro-batch's forward: a term added to the loss backpropagated
    before_optimizer_step   (gradients complete, not yet applied)
    after_optimizer_step  ──┘ one optimizer step
    on_task_end    (after the task's evaluation, before its checkpoint)

A hook that takes part in a collective (ZeRO-3 gathers, all-reduces) runs on every rank anyway; a
callback writes files or metrics on the main process only. `state_dict()` is saved in every checkpoint
(in `trainer_state.json`, so keep it small and JSON-able) and restored on resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from plasticity_dist.curriculum import Task


@dataclass(frozen=True)
class LoopPosition:
    """Where the loop stands: `step` and `step_in_task` count the optimizer step being run (from 1)."""

    task: Task
    step: int
    step_in_task: int
    task_steps: int
    tokens: int  # tokens seen once this step is done
    lr: float

    @property
    def is_task_end(self) -> bool:
        return self.step_in_task == self.task_steps


class Callback:
    """Base class: every hook does nothing, so a callback overrides only what it needs."""

    name = "callback"  # key of its state in trainer_state.json

    def on_task_start(self, at: LoopPosition) -> None:
        pass

    def on_step_start(self, at: LoopPosition) -> None:
        pass

    def loss_term(self) -> torch.Tensor | None:
        return None

    def before_optimizer_step(self) -> None:
        pass

    def after_optimizer_step(self, at: LoopPosition) -> None:
        pass

    def on_task_end(self, at: LoopPosition) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Callbacks(Callback):
    """Several callbacks seen as one: each hook is called on every member, in order."""

    def __init__(self, members: Sequence[Callback] = ()) -> None:
        names = [member.name for member in members]
        if len(set(names)) != len(names):
            raise ValueError(f"callback names must be unique: {names}")
        self.members = list(members)

    def _each(self, hook: str, *args: Any) -> None:
        for member in self.members:
            getattr(member, hook)(*args)

    def on_task_start(self, at: LoopPosition) -> None:
        self._each("on_task_start", at)

    def on_step_start(self, at: LoopPosition) -> None:
        self._each("on_step_start", at)

    def loss_term(self) -> torch.Tensor | None:
        terms = [term for term in (member.loss_term() for member in self.members) if term is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def before_optimizer_step(self) -> None:
        self._each("before_optimizer_step")

    def after_optimizer_step(self, at: LoopPosition) -> None:
        self._each("after_optimizer_step", at)

    def on_task_end(self, at: LoopPosition) -> None:
        self._each("on_task_end", at)

    def state_dict(self) -> dict[str, Any]:
        return {member.name: member.state_dict() for member in self.members}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for member in self.members:
            member.load_state_dict(state.get(member.name, {}))
