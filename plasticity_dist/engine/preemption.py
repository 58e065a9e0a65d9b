"""Stop cleanly on SIGUSR1/SIGTERM (Slurm's time-limit and preemption signals).

A signal only sets a flag; `should_stop` all-reduces it so that every rank stops after the same step
(as Megatron does), then the trainer saves a checkpoint and exits with `REQUEUE_EXIT_CODE`. One rank
receiving the signal is enough.
"""

from __future__ import annotations

import signal
from types import FrameType

import torch
import torch.distributed as dist


REQUEUE_EXIT_CODE = 75  # EX_TEMPFAIL: "try again"
# On such an exit the trainer also writes RunLayout.preempted: launchers (accelerate launch, torchrun) do not
# pass a rank's exit code on, so slurm/common.sh requeues when it finds that file.


class PreemptionFlag:
    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGUSR1, signal.SIGTERM)) -> None:
        self.received: int | None = None
        for signum in signals:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def should_stop(self, device: torch.device) -> bool:
        """True on every rank as soon as any rank has received a signal."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.received is not None  # a collective at every step costs a tiny model's step a few %
        flag = torch.tensor([0 if self.received is None else 1], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
