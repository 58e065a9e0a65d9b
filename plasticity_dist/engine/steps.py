"""Optimizer steps and evaluation on a DeepSpeed engine prepared by Accelerate; shared by trainer and probe.

Gradient accumulation is driven through the engine's explicit boundary API, so it never depends on a
step counter restored from a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import torch
from accelerate import Accelerator

from plasticity_dist.engine.gpu import on_cuda
from plasticity_dist.model.gpt import GPT
from plasticity_dist.study.config import ExperimentConfig

Batch = tuple[torch.Tensor, torch.Tensor]


class StepHooks(Protocol):
    """What a training step calls back (the trainer's callbacks): a term added to each micro-batch's loss before
    its backward, and a hook between complete gradients and the optimizer step."""

    def loss_term(self) -> torch.Tensor | None: ...

    def before_optimizer_step(self) -> None: ...


class NoHooks:
    """Hooks that add nothing: a plain optimizer step (a probe's)."""

    def loss_term(self) -> None:
        return None

    def before_optimizer_step(self) -> None:
        pass


def adamw_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices (linear and embedding weights), not LayerNorm gains: the nanoGPT rule."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


class StepRunner:
    """Owns the engine and its torch AdamW (given to `prepare`: resume is bitwise only that way; fused on
    CUDA unless `optimizer.fused` says otherwise)."""

    def __init__(self, accelerator: Accelerator, model: GPT, config: ExperimentConfig, accum_steps: int) -> None:
        optimizer = torch.optim.AdamW(
            adamw_param_groups(model, config.optimizer.weight_decay),
            lr=config.optimizer.lr, betas=tuple(config.optimizer.betas), eps=config.optimizer.eps,
            fused=on_cuda(config.optimizer.fused),
        )
        self.accelerator = accelerator
        self.device = accelerator.device
        self.accum_steps = accum_steps
        self.engine, self.optimizer = accelerator.prepare(model, optimizer)
        if self.engine.zero_optimization_stage() == 0 and accelerator.num_processes == 1:
            self.engine.enable_backward_allreduce = False  # a world of one: its all-reduce is ~5 % of a tiny step
        if on_cuda(config.model.compile):
            self.engine.compile()  # DeepSpeed's own torch.compile of the wrapped module

    def train_step(self, batches: Iterator[Batch], lr: float, hooks: StepHooks = NoHooks()) -> tuple[float, float]:
        """One optimizer step over `accum_steps` micro-batches; returns the global mean loss (without the
        hooks' loss terms) and the gradient norm."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        self.engine.train()
        for micro_step in range(self.accum_steps):
            inputs, targets = (t.to(self.device, non_blocking=True) for t in next(batches))
            self.engine.set_gradient_accumulation_boundary(micro_step == self.accum_steps - 1)
            loss = self.engine(inputs, targets)
            extra = hooks.loss_term()
            self.engine.backward(loss if extra is None else loss + extra)
            loss_sum += loss.detach().float()
        hooks.before_optimizer_step()
        grad_norm = self._stage0_grad_norm()
        self.engine.step()
        mean_loss = loss_sum / self.accum_steps
        if self.accelerator.num_processes > 1:  # a collective even in a world of one, a few % of a tiny model's step
            mean_loss = self.accelerator.reduce(mean_loss, reduction="mean")
        if grad_norm is None:
            grad_norm = self.engine.get_global_grad_norm()
        return mean_loss.item(), float(grad_norm) if grad_norm is not None else math.nan

    def _stage0_grad_norm(self) -> torch.Tensor | None:
        """Without ZeRO DeepSpeed keeps no gradient norm: the norm of the reduced gradients (the same on every
        rank) before the step clips and clears them. None under ZeRO, whose optimizer keeps it."""
        if self.engine.zero_optimization_stage() > 0:
            return None
        grads = [param.grad for param in self.engine.module.parameters() if param.grad is not None]
        return torch.nn.utils.get_total_norm(grads) if grads else None

    def evaluate(self, batches: Iterable[Batch]) -> float:
        """Mean loss over `batches`; every rank must pass the same batches (ZeRO-3 forwards are collective)."""
        self.engine.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for inputs, targets in batches:
                loss = self.engine(inputs.to(self.device), targets.to(self.device))
                total += loss.float().item() * len(inputs)
                count += len(inputs)
        if not count:
            raise ValueError("evaluation got no batches: the validation split is empty")
        return total / count
