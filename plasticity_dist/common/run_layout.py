"""Where everything of a run directory lives: the one place that knows its file names.

A probe of checkpoint `<tag>` is a run of its own in `RUN/probes/<tag>/`, with the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PREEMPTED_MARKER = "preempted"  # slurm/common.sh looks for this name: keep them in step


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunLayout:
        """The run that saved `RUN/checkpoints/<tag>`."""
        return cls(Path(checkpoint).resolve().parent.parent)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def wandb_run(self) -> Path:
        """The run's Weights & Biases run: its id and what has been logged to it (W&B's own files: RUN/wandb/)."""
        return self.root / "wandb_run.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, tag: str) -> Path:
        return self.checkpoints / tag

    @property
    def latest(self) -> Path:
        """Text file naming the newest complete checkpoint."""
        return self.checkpoints / "latest"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def preempted(self) -> Path:
        return self.root / PREEMPTED_MARKER

    @property
    def probes(self) -> Path:
        return self.root / "probes"

    @property
    def pending(self) -> Path:
        """The probe queue: one request per checkpoint still without a result."""
        return self.probes / "pending"

    def pending_request(self, tag: str) -> Path:
        return self.pending / f"{tag}.json"

    def probe_result(self, tag: str) -> Path:
        return self.probes / f"{tag}.json"

    def probe_run(self, tag: str) -> RunLayout:
        """The probe of checkpoint `tag` as a run of its own."""
        return RunLayout(self.probes / tag)

    @property
    def probe_logs(self) -> Path:
        return self.probes / "logs"

    def probe_log(self, tag: str, attempt: int) -> Path:
        return self.probe_logs / f"{tag}.attempt{attempt}.log"
