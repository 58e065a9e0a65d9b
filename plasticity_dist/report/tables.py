"""The report's figures as table rows and statements: cells formatted once, for report.md and for the terminal
(rich tables)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from plasticity_dist.analysis.censoring import OnsetObservation

AUC_COLUMNS = ("run", "model", "cycle", "tasks", "tokens", "AUC", "% change", "σ (% change)", "% vs fresh init",
               "AUC w/o step 0", "% change w/o step 0", "σ (% change w/o step 0)", "% vs fresh init w/o step 0")
TERMINAL_AUC_COLUMNS = ("run", "cycle", "tasks", "AUC", "% change", "σ (% change)")  # report.md has them all
ONSET_COLUMNS = ("run", "model", "non-embedding params", "problem", "onset: best break", "95 % interval",
                 "95 % interval (tokens)", "how")
GROUP_ONSET_COLUMNS = ("group", "model", "n", "onset: mean ± SE (pinned runs)", "pinned", "> (after)",
                       "≤ (at or before)", "undetermined")
TRAINING_COLUMNS = ("run", "steps", "tokens", "tasks completed", "final loss", "last val loss", "tokens/s")
WARNING_COLUMNS = ("run", "kind", "task", "cycle", "step", "tokens", "value", "reference", "threshold", "message")


def number_cell(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)

def change_cell(change: float | None, within: bool | None) -> str:
    """A % change, marked when it lies within noise of zero."""
    return number_cell(change, "+.2f") + (" (within noise)" if within else "")

def _sigma_cell(noise: dict[str, Any] | None) -> str:
    """σ of a run's % changes, its degrees of freedom and the t multiple its changes are judged by (family-wise
    over the run's changes, as the report's text says)."""
    if noise is None:
        return "–"
    return f"{noise['sigma_pct_change']:.2f} ({noise['degrees_of_freedom']:.1f} df, t {noise['multiple']:.2f})"

def auc_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    """The AUC table: one row per probe of every run, baseline (cycle 0) first, each % change beside the
    noise σ of the run's % changes."""
    rows = []
    for run in summary["runs"]:
        noise = run["noise"]
        for probe in run["probes"]:
            rows.append((
                run["run"], run["model"], "0 (baseline)" if probe["cycle"] == 0 else str(probe["cycle"]),
                str(probe["tasks_trained"]), f"{probe['tokens']:,}", auc_value(probe),
                change_cell(probe["auc_pct_change"], probe["auc_pct_change_within_noise"]), _sigma_cell(noise["auc"]),
                number_cell(probe["auc_vs_fresh_pct"], "+.2f"), number_cell(probe["auc_without_step0"], ".4f"),
                change_cell(probe["auc_without_step0_pct_change"], probe["auc_without_step0_pct_change_within_noise"]),
                _sigma_cell(noise["auc_without_step0"]), number_cell(probe["auc_without_step0_vs_fresh_pct"], "+.2f"),
            ))
    return rows

def reference_line(summary: dict[str, Any]) -> str:
    """Each run's reference probe, or why it has none."""
    return "Reference probes: " + "; ".join(
        f"{run['run']}: " + (run["reference_reason"] if run["reference_probe"] is None else
                             "`{checkpoint}` (cycle {cycle}, {tasks_trained} tasks)".format(**run["reference_probe"]))
        for run in summary["runs"]) + "."

def probe_design_lines(summary: dict[str, Any]) -> list[str]:
    """Which runs' AUC starts after step 0 (`probe.auc_from_point`), and where, and which runs' probes are means
    over several probe permutations; none when every probe is one curve's whole AUC."""
    later = [f"{run['run']}: from {run['auc_from_tokens']:,} probe tokens" for run in summary["runs"]
             if run["auc_from_tokens"]]
    averaged = [f"{run['run']}: {run['probe_permutations']}" for run in summary["runs"] if run["probe_permutations"] > 1]
    lines = []
    if later:
        lines.append("AUC over the later part of the probe only (`probe.auc_from_point`; the loss before it reflects "
                     "how confidently the checkpoint predicts its last task, not how fast it learns the probe): "
                     + "; ".join(later) + ". Its % changes and its % vs fresh init are over that part of both curves.")
    if averaged:
        lines.append("Probes that are the mean of several probes of the checkpoint, each under a probe permutation of "
                     "its own (`curriculum.control.probe_permutations`; each result keeps their AUCs as "
                     "`permutation_aucs`): " + "; ".join(averaged) + ". The fresh-init probe is averaged alike.")
    return lines


def observation_cell(run: dict[str, Any], unit: str) -> str:
    """Where a run's onset lies in `unit`: "(16, 24]", "> 224", "≤ 10", or – when undetermined."""
    observation = run["onset_observation"]
    if observation is None or (unit == "tasks" and observation["tasks"] is None):
        return "–"
    return OnsetObservation.from_json(observation).describe(unit)

def onset_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per run: the best break, the interval in the run's unit and in tokens, and how it was found."""
    return [(run["run"], run["model"], f"{run['non_embedding_params']:,}", run["problem"],
             number_cell(run["onset"], ",.4g") + (f" {run['onset_unit']}" if run["onset"] is not None else ""),
             observation_cell(run, run["onset_unit"]) + f" {run['onset_unit']}" * (run["onset_observation"] is not None),
             observation_cell(run, "tokens"), run["onset_reason"]) for run in summary["runs"]]

def mean_cell(mean: float | None, se: float | None, spec: str) -> str:
    """"mean ± SE", or the mean alone when one value leaves no standard error."""
    if mean is None:
        return "–"
    return format(mean, spec) + ("" if se is None else f" ± {format(se, spec.lstrip('+'))}")

def group_onset_rows(groups: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for group in groups:
        unit = group["onset_unit"]
        rows.append((", ".join(group["runs"]), group["model"], str(group["n"]),
                     mean_cell(group["onset_mean"], group["onset_se"], ",.4g") + (f" {unit}" if group["onset_mean"] else ""),
                     str(group["onset_interval_n"]), str(group["onset_right_censored"]),
                     str(group["onset_left_censored"]), str(group["onset_undetermined"])))
    return rows

def training_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for run in summary["runs"]:
        training = run["training"]
        rows.append((
            run["run"], number_cell(training.get("steps"), ","), number_cell(training.get("tokens"), ","),
            number_cell(training.get("tasks_completed"), "d"), number_cell(training.get("final_loss"), ".4f"),
            number_cell(training.get("last_val_loss"), ".4f"), number_cell(training.get("median_tokens_per_s"), ",.0f"),
        ))
    return rows

def interval_text(bounds: Sequence[float], spec: str) -> str:
    return f"[{format(bounds[0], spec)}, {format(bounds[1], spec)}]"

def fit_statements(summary: dict[str, Any]) -> list[str]:
    """The fit with what it rests on and its intervals, or why the runs cannot support one."""
    fit = summary["scaling_fit"]
    if fit is None:
        return [f"no fit: {summary['scaling_fit_reason']}"]
    return [f"interval-censored maximum likelihood over {fit['runs']} runs ({fit['groups']} replicate groups) at "
            f"{fit['sizes']} sizes ({fit['interval']} pinned to an interval, {fit['left']} at or before a bound, "
            f"{fit['right']} after one; {fit['unjudged_runs']} undetermined runs left out): T = {fit['a']:.4g} · "
            f"P^{fit['b']:.4f}, b in {interval_text(fit['b_ci'], '.4f')} ({fit['confidence']:.0%} profile likelihood, "
            f"Student's t on n − 2 = {fit['degrees_of_freedom']} degrees of freedom), σ(log T) = {fit['sigma']:.3g} "
            "(the scatter of single runs about the law)"]

def _rich_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("run", "model", "problem") else "right")
    for row in rows:
        table.add_row(*row)
    return table

def print_summary(summary: dict[str, Any], console: Console) -> None:
    shown = [AUC_COLUMNS.index(column) for column in TERMINAL_AUC_COLUMNS]
    console.print(_rich_table("Probe AUC per run and probe (% change vs the reference probe, the end of cycle 1)",
                              TERMINAL_AUC_COLUMNS,
                              [tuple(row[index] for index in shown) for row in auc_rows(summary)]))
    console.print(_rich_table("Onset of plasticity loss", ONSET_COLUMNS, onset_rows(summary)))
    groups = summary["replicate_groups"]
    if any(group["n"] > 1 for group in groups):
        console.print(_rich_table("Onset per replicate group", GROUP_ONSET_COLUMNS, group_onset_rows(groups)))
    for statement in fit_statements(summary):
        console.print(f"scaling fit: {statement}", highlight=False)


def auc_value(probe: dict[str, Any]) -> str:
    return "diverged" if probe["diverged"] else f"{probe['auc']:.4f}"


def auc_cell(probe: dict[str, Any] | None) -> str:
    if probe is None:
        return "–"
    if probe["diverged"]:
        return "diverged"
    return f"{probe['auc']:.4f} ({change_cell(probe['auc_pct_change'], probe['auc_pct_change_within_noise'])})"
