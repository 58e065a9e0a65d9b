"""`RUN/metrics.jsonl`: one JSON object per logged step or event, appended by the main process; with
`tensorboard=true`, the same numbers as TensorBoard scalars in `RUN/tensorboard/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plasticity_dist.fileio import atomic_write_text


NOT_SCALARS = ("time", "step", "task_index", "cycle")


class MetricsLog:
    def __init__(self, path: str | Path, enabled: bool, tensorboard_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.tensorboard = None
        if enabled and tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError("tensorboard=true needs the tensorboard package: pip install tensorboard") from None
            self.tensorboard = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tensorboard.add_scalar(f"{record['event']}/{key}", value, global_step=record["step"])
            self.tensorboard.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records past `step`: a resumed run redoes those steps and logs them again."""
        if self.enabled and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
