"""How one optimizer step is cut into micro-batches, worked out once from the data config and the world size
(`DataSection.batch_plan`): the loader, the step runner, DeepSpeed's config and the trainer all read it from here."""

from __future__ import annotations

from dataclasses import dataclass
from plasticity_dist.study.errors import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    seq_len: int
    micro_batch_size: int  # sequences per rank and forward pass
    global_batch_size: int  # sequences per optimizer step, over all ranks
    world_size: int = 1

    def __post_init__(self) -> None:
        if min(self.seq_len, self.micro_batch_size, self.global_batch_size, self.world_size) < 1:
            raise ConfigError(f"a batch plan needs positive sizes, got {self}")
        if self.global_batch_size % (self.micro_batch_size * self.world_size):
            raise ConfigError(
                f"data.global_batch_size={self.global_batch_size} is not a multiple of "
                f"data.micro_batch_size={self.micro_batch_size} x world size {self.world_size}"
            )

    @property
    def accum_steps(self) -> int:
        """Micro-batches each rank accumulates per optimizer step."""
        return self.global_batch_size // (self.micro_batch_size * self.world_size)

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.seq_len

    def steps_for(self, token_budget: int) -> int:
        """Optimizer steps of a task of `token_budget` tokens (whole steps, rounded down)."""
        return token_budget // self.tokens_per_step
