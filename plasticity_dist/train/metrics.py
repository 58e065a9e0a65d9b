"""`RUN/metrics.jsonl`: one JSON object per logged step or event, appended by the main process, and passed on
to the run's other sinks: TensorBoard scalars in `RUN/tensorboard/` (`tensorboard=true`) and a Weights & Biases
run (`wandb.enabled=true`, see `wandb_sink.py`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from plasticity_dist.common.fileio import atomic_write_text

if TYPE_CHECKING:
    from plasticity_dist.common.run_layout import RunLayout
    from plasticity_dist.study.config import ExperimentConfig
    from plasticity_dist.study.curriculum import Task


NOT_SCALARS = ("time", "step", "task_index", "cycle")


def task_record(event: str, task: Task, **fields: Any) -> dict[str, Any]:
    """A record of `event` during `task`: the fields every such record starts with (event, time, task,
    task_index, cycle), then `fields`."""
    return {"event": event, "time": time.time(), "task": task.name, "task_index": task.index, "cycle": task.cycle,
            **fields}


class MetricsSink(Protocol):
    """Somewhere else the records of `metrics.jsonl` go."""

    def write(self, record: dict[str, Any]) -> None: ...

    def truncate_after(self, step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoardSink:
    """Every numeric field of a record as the scalar `<event>/<field>` at the record's step."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("tensorboard=true needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(str(log_dir))

    def write(self, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{record['event']}/{key}", value, global_step=record["step"])
        self.writer.flush()

    def truncate_after(self, step: int) -> None:
        pass  # TensorBoard shows the last value written for a step

    def close(self) -> None:
        self.writer.close()


class MetricsLog:
    def __init__(self, path: str | Path, enabled: bool, tensorboard_dir: Path | None = None,
                 sinks: Sequence[MetricsSink] = ()) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.sinks: list[MetricsSink] = []
        if enabled:
            self.sinks = [*([TensorBoardSink(tensorboard_dir)] if tensorboard_dir is not None else []), *sinks]

    @classmethod
    def for_run(cls, config: ExperimentConfig, layout: RunLayout, is_main: bool) -> MetricsLog:
        """The metrics of the run `config` in `layout`, with the sinks its config turns on (main process only)."""
        sinks: list[MetricsSink] = []
        if is_main and config.wandb.enabled:
            from plasticity_dist.train.wandb_sink import WandbSink  # imports wandb: only when it is on

            sinks.append(WandbSink(config, layout))
        return cls(layout.metrics, is_main, layout.tensorboard if config.tensorboard else None, sinks)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for sink in self.sinks:
            sink.write(record)

    def truncate_after(self, step: int, next_task: int | None = None) -> None:
        """Drop records past `step`: a resumed run redoes those steps and logs them again. With `next_task` (a
        checkpoint at a task end), also the records at `step` of that task or a later one: their start (its
        step-0 evaluation) was not in the checkpoint and is logged again."""
        def kept(record: dict[str, Any]) -> bool:
            at_next = next_task is not None and record.get("step", 0) == step \
                and record.get("task_index", -1) >= next_task
            return record.get("step", 0) <= step and not at_next

        if self.enabled and self.path.is_file():
            lines = [line for line in self.path.read_text().splitlines() if line.strip() and kept(json.loads(line))]
            atomic_write_text(self.path, "".join(line + "\n" for line in lines))
        for sink in self.sinks:
            sink.truncate_after(step)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
