"""metrics.jsonl on resume: what a resumed run drops before it logs the redone steps again."""

from __future__ import annotations

from plasticity_dist.train.metrics import MetricsLog, read_metrics


def log_task(metrics: MetricsLog, task_index: int, first_step: int, last_step: int) -> None:
    """A task of steps first_step..last_step with an evaluation at its start (step first_step - 1) and end."""
    metrics.write({"event": "eval", "task_index": task_index, "step": first_step - 1})
    for step in range(first_step, last_step + 1):
        metrics.write({"event": "step", "task_index": task_index, "step": step})
    metrics.write({"event": "task_end", "task_index": task_index, "step": last_step})


def test_resume_at_a_task_end_drops_the_next_tasks_start_and_keeps_the_finished_task(tmp_path):
    metrics = MetricsLog(tmp_path / "metrics.jsonl", enabled=True)
    log_task(metrics, 0, 1, 4)
    log_task(metrics, 1, 5, 6)  # died in task 1; the last checkpoint is task 0's end, at step 4
    metrics.truncate_after(4, next_task=1)
    kept = [(record["event"], record["task_index"], record["step"]) for record in read_metrics(metrics.path)]
    assert kept == [("eval", 0, 0), *(("step", 0, step) for step in range(1, 5)), ("task_end", 0, 4)]


def test_resume_inside_a_task_keeps_every_record_up_to_the_checkpoint(tmp_path):
    metrics = MetricsLog(tmp_path / "metrics.jsonl", enabled=True)
    log_task(metrics, 0, 1, 4)
    metrics.truncate_after(2)
    assert [(record["event"], record["step"]) for record in read_metrics(metrics.path)] == [
        ("eval", 0), ("step", 1), ("step", 2)]
