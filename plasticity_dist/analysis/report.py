"""`plasticity-dist report`: from run directories to `report.md`, `summary.json`, PNG plots and a terminal table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from plasticity_dist.analysis import plots
from plasticity_dist.analysis.onset import describe_onset_rule
from plasticity_dist.analysis.predictors import DIAGNOSTICS
from plasticity_dist.analysis.runs import Run, events, load_run
from plasticity_dist.analysis.censoring import BOUND_SIGNS
from plasticity_dist.analysis.scaling import STUDY_LAW, PowerLaw, law_of, predict_onset
from plasticity_dist.analysis.summary import build_summary
from plasticity_dist.fileio import atomic_write_json, atomic_write_text

AUC_COLUMNS = ("run", "model", "cycle", "tasks", "tokens", "AUC", "% change", "AUC w/o step 0", "% change w/o step 0")
ONSET_COLUMNS = ("run", "model", "non-embedding params", "problem", "onset (tasks)", "onset (tokens)")
TRAINING_COLUMNS = ("run", "steps", "tokens", "tasks completed", "final loss", "last val loss", "tokens/s")
WARNING_COLUMNS = ("run", "kind", "task", "cycle", "step", "tokens", "value", "reference", "threshold", "message")
PREDICTION_PARAMS = 1e9


def _number(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def auc_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    """The AUC table: one row per probe of every run, baseline (cycle 0) first."""
    rows = []
    for run in summary["runs"]:
        for probe in run["probes"]:
            rows.append((
                run["run"], run["model"], "0 (baseline)" if probe["cycle"] == 0 else str(probe["cycle"]),
                str(probe["tasks_trained"]), f"{probe['tokens']:,}", f"{probe['auc']:.4f}",
                _number(probe["auc_pct_change"], "+.2f"), _number(probe["auc_without_step0"], ".4f"),
                _number(probe["auc_without_step0_pct_change"], "+.2f"),
            ))
    return rows


def _onset_cells(observation: dict[str, Any] | None) -> tuple[str, str]:
    """Tasks and tokens of an onset: "16", "> 24" (right-censored), "≤ 8" (left-censored) or "–"."""
    if observation is None:
        return "–", "–"
    sign = BOUND_SIGNS[observation["censoring"]]
    return f"{sign}{observation['tasks']}", f"{sign}{_number(observation['tokens'], ',')}"


def onset_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    return [(run["run"], run["model"], f"{run['non_embedding_params']:,}", run["problem"],
             *_onset_cells(run["onset_observation"])) for run in summary["runs"]]


def training_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for run in summary["runs"]:
        training = run["training"]
        rows.append((
            run["run"], _number(training.get("steps"), ","), _number(training.get("tokens"), ","),
            _number(training.get("tasks_completed"), "d"), _number(training.get("final_loss"), ".4f"),
            _number(training.get("last_val_loss"), ".4f"), _number(training.get("median_tokens_per_s"), ",.0f"),
        ))
    return rows


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _comparison_table(group: Sequence[dict[str, Any]]) -> str:
    """Runs that differ only in mitigations: AUC and its % change per cycle, onset, last task-end val loss."""
    cycles = sorted({probe["cycle"] for run in group for probe in run["probes"] if probe["cycle"] >= 1})
    rows = []
    for run in group:
        probes = {probe["cycle"]: probe for probe in run["probes"]}
        rows.append((run["run"], ", ".join(run["mitigations"]) or "none",
                     *(_auc_cell(probes.get(cycle)) for cycle in cycles), _number(run["onset"], "d"),
                     _number(run["training"].get("last_val_loss"), ".4f")))
    columns = ("run", "mitigations", *(f"cycle {cycle} AUC (%)" for cycle in cycles), "onset (tasks)", "last val loss")
    return _markdown_table(columns, rows)


def _auc_cell(probe: dict[str, Any] | None) -> str:
    if probe is None:
        return "–"
    return f"{probe['auc']:.4f} ({_number(probe['auc_pct_change'], '+.2f')})"


def mitigations_section(summary: dict[str, Any]) -> str:
    """Each run's mitigations, and a comparison of every group of runs that differ only in them."""
    runs = {run["run"]: run for run in summary["runs"]}
    lines = ["## Mitigations", "",
             "Active mitigations with their hyperparameters (re-warming is `optimizer.schedule=rewarm_cosine`).", "",
             _markdown_table(("run", "mitigations"),
                             [(run["run"], ", ".join(run["mitigations"]) or "none") for run in summary["runs"]])]
    for names in summary["mitigation_groups"]:
        lines += ["", f"### Runs that differ only in their mitigations: {', '.join(names)}", "",
                  "Each cell is the probe's AUC and, in brackets, its % change against the run's own first "
                  "post-cycle probe; the last val loss is that of the last task end.", "", _comparison_table([runs[name] for name in names])]
    return "\n".join(lines)


def diagnostics_section(summary: dict[str, Any]) -> str:
    """How well each diagnostic predicts the AUC rise, per run and on average."""
    rows = [(run["run"], *(_number(run["diagnostics_auc_spearman"][name], "+.2f") for name in DIAGNOSTICS))
            for run in summary["runs"]]
    mean = summary["diagnostics_auc_spearman_mean"]
    rows.append(("mean (runs)", *(f"{_number(mean[name]['rho'], '+.2f')} ({mean[name]['runs']})"
                                  for name in DIAGNOSTICS)))
    return "\n".join([
        "## Diagnostics as predictors of plasticity loss", "",
        "Spearman's ρ over cycles between a diagnostic's value at the end of a cycle and the AUC % change of the "
        "probe after that cycle: +1 = it rises in step with the AUC, −1 = it falls as the AUC rises; – when fewer "
        "than 3 cycles have both or either side is constant. The diagnostics over tokens are in the "
        "`diagnostics_<run>.png` figures.", "",
        _markdown_table(("run", *DIAGNOSTICS), rows),
    ])


def warnings_section(summary: dict[str, Any]) -> str:
    """The early-warning records the trainer logged, or "none"."""
    rows = [(run["run"], warning["kind"], warning["task"], str(warning["cycle"]), f"{warning['step']:,}",
             f"{warning['tokens']:,}", f"{warning['value']:.4g}", f"{warning['reference']:.4g}",
             f"{warning['threshold']:.4g}", warning["message"])
            for run in summary["runs"] for warning in run["warnings"]]
    return "\n".join(["## Early warnings", "", "Learning-stagnation warnings logged during training.", "",
                      _markdown_table(WARNING_COLUMNS, rows) if rows else "none"])


def _law_text(law: PowerLaw, task_tokens: int) -> str:
    tasks = predict_onset(PREDICTION_PARAMS, law)
    return (f"T = {law.a:.4g} · P^{law.b:.4f}; a {PREDICTION_PARAMS:.0e}-parameter model → {tasks:,.0f} tasks "
            f"({tasks * task_tokens:.3g} tokens at {task_tokens:.3g} tokens per task)")


def _interval(bounds: Sequence[float | None]) -> str:
    low, high = bounds
    return f"{'(−∞' if low is None else f'[{low:.4f}'}, {'∞)' if high is None else f'{high:.4f}]'}"


def fit_statements(summary: dict[str, Any]) -> list[str]:
    """One line per fit, stating n; a fit the runs cannot support says why."""
    statements = []
    fit = summary["scaling_fit"]
    if fit is None:
        statements.append(f"no least-squares fit: {summary['scaling_fit_reason']}")
    else:
        statements.append(
            f"least squares over exact onsets, n = {fit['n']} runs at {fit['sizes']} sizes: T = {fit['a']:.4g} · "
            f"P^{fit['b']:.4f}, b in {_interval(fit['b_ci'])}, a in [{fit['a_ci'][0]:.4g}, {fit['a_ci'][1]:.4g}] "
            f"({fit['confidence']:.0%} t-intervals, n − 2 = {fit['n'] - 2} degrees of freedom), σ(log T) = {fit['sigma']:.3g}")
    fit = summary["censored_fit"]
    if fit is None:
        statements.append(f"no censored fit: {summary['censored_fit_reason']}")
    else:
        statements.append(
            f"censored maximum likelihood, n = {fit['n']} runs at {fit['sizes']} sizes ({fit['exact']} exact, "
            f"{fit['right_censored']} right-censored, {fit['left_censored']} left-censored): T = {fit['a']:.4g} · "
            f"P^{fit['b']:.4f}, b in {_interval(fit['b_ci'])} ({fit['confidence']:.0%} profile likelihood), "
            f"σ(log T) = {fit['sigma']:.3g}")
    return statements


def scaling_section(summary: dict[str, Any], task_tokens: int) -> str:
    lines = ["## Scaling law of the onset", "",
             "Fits of log T = log a + b log P over the continual runs without mitigations (T in tasks, P the "
             "non-embedding parameters), each only from onsets at 3 or more model sizes. Least squares uses the "
             "exact onsets, with t-intervals on n − 2 degrees of freedom. The censored maximum-likelihood fit "
             "(Gaussian errors in log T) also takes runs without an onset as lower bounds (> X) and rises from "
             "the first probe as upper bounds (≤ X), with a profile-likelihood interval on b.", ""]
    lines += [f"- {statement}" for statement in fit_statements(summary)]
    lines += [f"- {name} prediction (n = {summary[key]['n']}): {_law_text(law_of(summary[key]), task_tokens)}"
              for key, name in (("scaling_fit", "least-squares"), ("censored_fit", "censored")) if summary[key]]
    lines.append(f"- published law: {_law_text(STUDY_LAW, task_tokens)}")
    return "\n".join(lines)


def render_markdown(summary: dict[str, Any], figures: Sequence[Path]) -> str:
    runs = summary["runs"]
    task_tokens = next((run for run in runs if run["problem"] == "continual"), runs[0])["task_tokens"]
    sections = [
        "# Plasticity report", "",
        "Runs: " + ", ".join(f"`{run['path']}`" for run in runs), "",
        "## Probe AUC", "",
        "AUC is the probe's mean validation loss (trapezoid area over probe training tokens / span). "
        "% change is against the first post-cycle probe: positive = worse probing = less plasticity; cycle 0 is "
        "the probe of the untrained initial weights. Stationary runs: cycles are probe intervals. The AUC "
        "without step 0 leaves out the loss before any probe training, which the AUC weights by half its first "
        "eval interval (5 % at the study's 11 linear points) and which can decide small differences. A run's "
        "probes share one probe config and eval grid (the report refuses to mix them).", "",
        _markdown_table(AUC_COLUMNS, auc_rows(summary)), "",
        "## Onset of plasticity loss", "",
        f"Definition: {describe_onset_rule(summary['onset_k'])}.", "",
        _markdown_table(ONSET_COLUMNS, onset_rows(summary)), "",
        "\"> X\": no onset yet; the onset lies after the last probe the rule can judge (right-censored). "
        "\"≤ X\": the rise starts at the first post-cycle probe, so the onset lies at or before it "
        "(left-censored); neither is fit as an exact onset.", "",
        scaling_section(summary, task_tokens), "",
        "## Training", "",
        _markdown_table(TRAINING_COLUMNS, training_rows(summary)), "",
        mitigations_section(summary), "",
        diagnostics_section(summary), "",
        warnings_section(summary), "",
        "## Figures", "",
        *(f"![{path.stem}]({path.name})\n" for path in figures),
    ]
    return "\n".join(sections)


def draw_figures(runs: Sequence[Run], summary: dict[str, Any], out: Path) -> list[Path]:
    """Every figure of the report; runs without probes or metrics skip only the plots that need them."""
    figures = []
    for problem in ("continual", "stationary"):
        records = [run for run in summary["runs"] if run["problem"] == problem and run["probes"]]
        if records:
            figures.append(plots.plot_auc_change(records, problem, out / f"auc_change_{problem}.png"))
    figures.append(plots.plot_scaling(summary, out / "onset_scaling.png"))
    for run in runs:
        if run.probes:
            figures.append(plots.plot_probe_curves(run, out / f"probe_curves_{run.name}.png"))
        if events(run.metrics, "step"):
            figures.append(plots.plot_training_loss(run, out / f"training_loss_{run.name}.png"))
        if events(run.metrics, "diagnostics"):
            figures.append(plots.plot_diagnostics(run, out / f"diagnostics_{run.name}.png"))
    return figures


def _rich_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("run", "model", "problem") else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_summary(summary: dict[str, Any], console: Console) -> None:
    console.print(_rich_table("Probe AUC per run and cycle (% change vs first post-cycle probe)", AUC_COLUMNS,
                              auc_rows(summary)))
    console.print(_rich_table("Onset of plasticity loss", ONSET_COLUMNS, onset_rows(summary)))
    for statement in fit_statements(summary):
        console.print(f"scaling fit: {statement}", highlight=False)


def write_report(run_dirs: Sequence[str | Path], out: str | Path, k: float = 3.0,
                 console: Console | None = None) -> dict[str, Any]:
    """Analyse the runs and write `report.md`, `summary.json` and the PNGs into `out`; returns the summary."""
    if not run_dirs:
        raise ValueError("report needs at least one run directory")
    runs = [load_run(run_dir) for run_dir in run_dirs]
    summary = build_summary(runs, k=k)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(runs, summary, out)
    atomic_write_text(out / "report.md", render_markdown(summary, figures))
    atomic_write_json(out / "summary.json", summary)
    console = console or Console()
    print_summary(summary, console)
    console.print(f"report: {out / 'report.md'}; summary: {out / 'summary.json'}; {len(figures)} plots in {out}")
    return summary
