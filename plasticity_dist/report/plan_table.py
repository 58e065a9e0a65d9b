"""Study plans as a rich table or Markdown: one row per quantity, one column per config."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from plasticity_dist.report.plan import StudyPlan


def _bytes(count: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count / 1e3:.3g} kB"


def _onset(plan: StudyPlan) -> str:
    if plan.onset_tasks is None:
        return "n/a (stationary)"
    return f"{plan.onset_tasks:.1f} tasks = {plan.onset_cycles:.2f} cycles"


def _observes(plan: StudyPlan) -> str:
    if plan.observes_onset is None:
        return "n/a"
    return f"{'yes' if plan.observes_onset else 'NO'} (needs {plan.cycles_to_observe_onset}, has {plan.cycles})"


def _per_task_probes(plan: StudyPlan) -> str:
    if plan.per_task_probe_cycles_needed is None:
        return "n/a (stationary)"
    has = f"cycles 1-{plan.per_task_probe_cycles}" if plan.per_task_probe_cycles else "none"
    return f"{has} (needs {plan.per_task_probe_cycles_needed or 'none'})"


def _seeds(plan: StudyPlan) -> str:
    per_seed = plan.train_gpu_hours + plan.probe_gpu_hours
    return f"{per_seed:,.0f} per seed, {plan.gpu_hours_all_seeds:,.0f} for {plan.replicates}"


ROWS: tuple[tuple[str, Callable[[StudyPlan], str]], ...] = (
    ("model (non-embedding / total params)", lambda p: f"{p.model} ({p.non_embedding_params:,} / {p.total_params:,})"),
    ("tasks x cycles", lambda p: f"{p.tasks} ({p.cycles} cycles, {p.problem})"),
    ("training tokens (steps)", lambda p: f"{p.train_tokens:.3g} ({p.steps:,})"),
    ("probes (tokens, share of compute)", lambda p: f"{p.probes} ({p.probe_tokens:.3g}, {100 * p.probe_compute_share:.1f} %)"),
    ("probes after every task (continual)", _per_task_probes),
    ("predicted onset (published law)", _onset),
    ("cycles observe the onset", _observes),
    ("FLOP/token (6N + attention + output)", lambda p: f"{p.flops_per_token:.3g}"),
    ("training FLOPs", lambda p: f"{p.train_flops:.3g}"),
    ("assumed GPU, MFU", lambda p: f"{p.gpu.upper()}, {100 * p.mfu:.0f} %"),
    ("training GPU-hours", lambda p: f"{p.train_gpu_hours:,.0f}"),
    ("probe GPU-hours", lambda p: f"{p.probe_gpu_hours:,.0f}"),
    ("GPU-hours, training + probes (seeds)", _seeds),
    ("training wall time", lambda p: f"{p.train_wall_days:,.1f} days on {p.gpus} GPUs"),
    ("datasets on disk", lambda p: f"{_bytes(p.dataset_bytes)} ({'manifests' if p.dataset_bytes_from_manifests else 'uncompressed estimate'})"),
    ("one full checkpoint", lambda p: _bytes(p.checkpoint_bytes)),
    ("kept checkpoints (count, whole)", lambda p: f"{p.kept_checkpoints}, {_bytes(p.kept_bytes)}"),
    ("kept checkpoints, as slimmed", lambda p: f"{_bytes(p.kept_bytes_slimmed)} ({_bytes(p.slim_checkpoint_bytes)} each)"),
)


def print_plan_table(plans: Sequence[StudyPlan]) -> None:
    table = Table(title="Study plan")
    table.add_column("")
    for plan in plans:
        table.add_column(plan.config or plan.model, justify="right")
    for label, cell in ROWS:
        table.add_row(label, *(cell(plan) for plan in plans))
    Console().print(table)


def plan_markdown(plans: Sequence[StudyPlan]) -> str:
    """The same table in Markdown (what the README shows)."""
    lines = ["| | " + " | ".join(plan.model for plan in plans) + " |", "|---" * (len(plans) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cell(plan) for plan in plans) + " |" for label, cell in ROWS]
    return "\n".join(lines)
