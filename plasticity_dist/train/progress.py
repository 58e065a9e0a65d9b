"""Rich progress display of a training run (main process only): tasks done, and the task in progress."""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from plasticity_dist.study.curriculum import Task


class TrainingProgress:
    def __init__(self, tasks: list[Task], enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"), TimeRemainingColumn(), disable=not enabled,
        )
        self.run_bar = self.progress.add_task("run", total=len(tasks), loss="")
        self.task_bar: int | None = None

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def start_task(self, task: Task, total_steps: int, completed_steps: int) -> None:
        self.progress.update(self.run_bar, completed=task.index)
        if self.task_bar is not None:
            self.progress.remove_task(self.task_bar)
        description = f"cycle {task.cycle} task {task.name}"
        self.task_bar = self.progress.add_task(description, total=total_steps, completed=completed_steps, loss="")

    def advance(self, loss: float) -> None:
        self.progress.update(self.task_bar, advance=1, loss=f"loss {loss:.4f}")
