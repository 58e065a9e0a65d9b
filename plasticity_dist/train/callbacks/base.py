"""The one interface the training loop's parts hang off it by (task-end evaluation, diagnostics, mitigations,
early warning, checkpoints and probe requests), in the manner of OLMo-core's callbacks: the loop calls every
hook on every rank, in ascending `priority` of the callbacks:

    on_task_start  (a task begins from its first step; not when a run resumes inside a task)
    on_step_start  ─┐
    loss_term       │ after each training micro-batch's forward: a term added to the loss backpropagated
    before_optimizer_step   (gradients complete, not yet applied)
    after_optimizer_step    one optimizer step
    on_step_end   ──┘ the step is counted and logged (the trainer state is the one a checkpoint saves)
    on_task_end    (the task is done; the trainer state already points at the next task)

A hook that takes part in a collective (ZeRO-3 gathers, all-reduces) runs on every rank anyway; a
callback writes files or metrics on the main process only. `state_dict()` is saved in every checkpoint
(in `trainer_state.json`, so keep it small and JSON-able) and restored on resume, unless the callback has no
state of its own (`saves_state = False`); tensors too large for that (a copy of the weights) go in
`rank_tensors()`, which every rank saves and restores for itself, so each holds only its share (its ZeRO
partition).

Each callback builds itself from its config section and a `RunContext` (`from_context`, None when its
section leaves it off) and says whether it needs the weights training starts from; the trainer only lists
the callback types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from plasticity_dist.study.curriculum import Task

if TYPE_CHECKING:
    from plasticity_dist.engine.checkpoint import Checkpointer
    from plasticity_dist.probe.scheduler import ProbeScheduler
    from plasticity_dist.study.batch_plan import BatchPlan
    from plasticity_dist.study.config import ExperimentConfig
    from plasticity_dist.engine.validation import Validator
    from plasticity_dist.train.metrics import MetricsLog
    from plasticity_dist.common.run_layout import RunLayout
    from plasticity_dist.engine.steps import StepRunner


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


@dataclass
class RunContext:
    """What a callback may build itself from: one handle on the run, instead of arguments the trainer picks."""

    config: ExperimentConfig
    step_runner: StepRunner
    validator: Validator
    plan: BatchPlan
    tasks: list[Task]
    metrics: MetricsLog
    layout: RunLayout
    is_main: bool
    initial_weights: dict[str, torch.Tensor]  # the weights training starts from, if a callback wants them
    checkpointer: Checkpointer
    probe_scheduler: ProbeScheduler | None  # on the main process of a run with probes
    # what a checkpoint saves now besides the engine: the trainer state (every callback's state included) and this
    # rank's callback tensors
    checkpoint_contents: Callable[[], tuple[dict[str, Any], dict[str, torch.Tensor]]]
    _shared: dict[str, Any] = field(default_factory=dict)

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """A value several callbacks use (the held-out batch), made by the first that asks."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]


class Callback:
    """Base class: every hook does nothing, so a callback overrides only what it needs."""

    name = "callback"  # key of its state in trainer_state.json
    priority = 50  # hooks run in ascending priority: a callback that must see another's work runs after it
    saves_state = True  # False: nothing of it goes into trainer_state.json

    @classmethod
    def from_context(cls, context: RunContext) -> Callback | None:
        """This callback as the run's config asks for it, or None when its config section leaves it off."""
        return None

    @classmethod
    def wants_initial_weights(cls, config: ExperimentConfig, is_main: bool) -> bool:
        """Whether it needs `RunContext.initial_weights` (they are copied before the engine takes the model)."""
        return False

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

    def on_step_end(self, at: LoopPosition) -> None:
        pass

    def on_task_end(self, at: LoopPosition) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def rank_tensors(self) -> dict[str, torch.Tensor]:
        """This rank's tensor state, saved in a file of its own in every checkpoint (keys: names of tensors)."""
        return {}

    def load_rank_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore `rank_tensors()` from a checkpoint (empty when the checkpoint holds none for this callback)."""


CallbackT = TypeVar("CallbackT", bound=Callback)


class Callbacks(Callback):
    """Several callbacks seen as one: each hook is called on every member, in order."""

    def __init__(self, members: Sequence[Callback] = ()) -> None:
        names = [member.name for member in members]
        if len(set(names)) != len(names):
            raise ValueError(f"callback names must be unique: {names}")
        self.members = list(members)

    @classmethod
    def build(cls, types: Sequence[type[Callback]], context: RunContext) -> Callbacks:
        """The callbacks of `types` that the run's config turns on, in ascending priority."""
        ordered = sorted(types, key=lambda callback_type: callback_type.priority)
        members = (callback_type.from_context(context) for callback_type in ordered)
        return cls([member for member in members if member is not None])

    def member(self, callback_type: type[CallbackT]) -> CallbackT:
        """The one member of `callback_type`."""
        (found,) = (member for member in self.members if isinstance(member, callback_type))
        return found

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

    def on_step_end(self, at: LoopPosition) -> None:
        self._each("on_step_end", at)

    def on_task_end(self, at: LoopPosition) -> None:
        self._each("on_task_end", at)

    def state_dict(self) -> dict[str, Any]:
        return {member.name: member.state_dict() for member in self.members if member.saves_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for member in self.members:
            member.load_state_dict(state.get(member.name, {}))

    def rank_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{member.name}/{key}": tensor for member in self.members
                for key, tensor in member.rank_tensors().items()}

    def load_rank_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for member in self.members:
            prefix = f"{member.name}/"
            member.load_rank_tensors({key[len(prefix):]: tensor for key, tensor in tensors.items()
                                      if key.startswith(prefix)})
