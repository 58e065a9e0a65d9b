"""`plasticity-dist report`: from run directories to `report.md`, `summary.json`, PNG plots and a terminal table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from plasticity_dist.analysis import plots
from plasticity_dist.analysis.onset import describe_onset_rule
from plasticity_dist.analysis.correlation import MIN_POINTS
from plasticity_dist.analysis.predictors import DIAGNOSTICS
from plasticity_dist.analysis.runs import Run, events, load_run
from plasticity_dist.analysis.censoring import BOUND_SIGNS
from plasticity_dist.analysis.scaling import STUDY_LAW, PowerLaw, law_of, predict_onset
from plasticity_dist.analysis.summary import build_summary
from plasticity_dist.fileio import atomic_write_json, atomic_write_text

AUC_COLUMNS = ("run", "model", "cycle", "tasks", "tokens", "AUC", "% change", "σ (% change)", "AUC w/o step 0",
               "% change w/o step 0", "σ (% change w/o step 0)")
TERMINAL_AUC_COLUMNS = ("run", "cycle", "tasks", "AUC", "% change", "σ (% change)")  # report.md has them all
ONSET_COLUMNS = ("run", "model", "non-embedding params", "problem", "onset (tasks)", "onset (tokens)",
                 "95 % interval")
GROUP_ONSET_COLUMNS = ("group", "model", "n", "onset: mean ± SE", "exact", "> (no onset yet)",
                       "≤ (from the first probe)", "fit point (geometric mean)")
STUDY_TASK_TOKENS = 5_000_000_000  # the study's task size: the published law's tasks are of this many tokens
TRAINING_COLUMNS = ("run", "steps", "tokens", "tasks completed", "final loss", "last val loss", "tokens/s")
WARNING_COLUMNS = ("run", "kind", "task", "cycle", "step", "tokens", "value", "reference", "threshold", "message")
PREDICTION_PARAMS = 1e9


def _number(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _change_cell(change: float | None, within: bool | None) -> str:
    """A % change, marked when it lies within noise of zero."""
    return _number(change, "+.2f") + (" (within noise)" if within else "")


def _sigma_cell(noise: dict[str, Any] | None) -> str:
    """σ of a run's % changes with the degrees of freedom it rests on (few make σ itself uncertain)."""
    return "–" if noise is None else f"{noise['sigma_pct_change']:.2f} ({noise['degrees_of_freedom']} df)"


def auc_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    """The AUC table: one row per probe of every run, baseline (cycle 0) first, each % change beside the
    noise σ of the run's % changes."""
    rows = []
    for run in summary["runs"]:
        noise = run["noise"]
        for probe in run["probes"]:
            rows.append((
                run["run"], run["model"], "0 (baseline)" if probe["cycle"] == 0 else str(probe["cycle"]),
                str(probe["tasks_trained"]), f"{probe['tokens']:,}", _auc_value(probe),
                _change_cell(probe["auc_pct_change"], probe["auc_pct_change_within_noise"]), _sigma_cell(noise["auc"]),
                _number(probe["auc_without_step0"], ".4f"),
                _change_cell(probe["auc_without_step0_pct_change"], probe["auc_without_step0_pct_change_within_noise"]),
                _sigma_cell(noise["auc_without_step0"]),
            ))
    return rows


def reference_line(summary: dict[str, Any]) -> str:
    """Each run's reference probe, or why it has none."""
    return "Reference probes: " + "; ".join(
        f"{run['run']}: " + (run["reference_reason"] if run["reference_probe"] is None else
                             "`{checkpoint}` (cycle {cycle}, {tasks_trained} tasks)".format(**run["reference_probe"]))
        for run in summary["runs"]) + "."


def _bounded(observation: dict[str, Any] | None, key: str, spec: str) -> str:
    """An observation's tasks or tokens with its bound: "16", "> 24" (right-censored), "≤ 8" (left-censored)."""
    if observation is None or observation[key] is None:
        return "–"
    return f"{BOUND_SIGNS[observation['censoring']]}{format(observation[key], spec)}"


def _interval_cell(run: dict[str, Any]) -> str:
    if run["onset_interval"] is None:
        return "–"
    low, high = run["onset_interval"]
    return f"[{low:,}, {high:,}] {run['onset_unit']}"


def onset_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per run; a stationary run's onset is in tokens only."""
    return [(run["run"], run["model"], f"{run['non_embedding_params']:,}", run["problem"],
             _bounded(run["onset_observation"], "tasks", "g"), _bounded(run["onset_observation"], "tokens", ",.0f"),
             _interval_cell(run)) for run in summary["runs"]]


def _mean_cell(mean: float | None, se: float | None, spec: str) -> str:
    """"mean ± SE", or the mean alone when one value leaves no standard error."""
    if mean is None:
        return "–"
    return format(mean, spec) + ("" if se is None else f" ± {format(se, spec.lstrip('+'))}")


def group_onset_rows(groups: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for group in groups:
        unit = group["onset_unit"]
        rows.append((", ".join(group["runs"]), group["model"], str(group["n"]),
                     _mean_cell(group["onset_mean"], group["onset_se"], ",.4g") + (f" {unit}" if group["onset_mean"] else ""),
                     str(group["onset_exact_n"]), str(group["onset_right_censored"]), str(group["onset_left_censored"]),
                     _bounded(group["onset_observation"], "tasks" if unit == "tasks" else "tokens", ",.4g")))
    return rows


def _group_change_table(group: dict[str, Any]) -> str:
    rows = [("0 (baseline)" if cycle["cycle"] == 0 else str(cycle["cycle"]), str(cycle["tasks_trained"]),
             f"{cycle['tokens']:,}", str(cycle["n"]),
             *(_mean_cell(cycle[f"{change}_mean"], cycle[f"{change}_se"], "+.2f")
               + (" (within noise)" if cycle[f"{change}_within_noise"] and cycle["cycle"] > 1 else "")
               for change in ("auc_pct_change", "auc_without_step0_pct_change")))
            for cycle in group["cycles"]]
    return _markdown_table(("cycle", "tasks", "tokens", "n", "% change: mean ± SE", "% change w/o step 0: mean ± SE"),
                           rows)


def replicates_section(summary: dict[str, Any]) -> str:
    """Groups of runs that differ only in their seeds: per-cycle % changes and onsets as mean ± SE with n."""
    groups = summary["replicate_groups"]
    replicated = [group for group in groups if group["n"] > 1]
    lines = ["## Replicate groups", "",
             "Runs that differ only in `seed` and `data.seed` form a group. Each % change is against the run's own "
             "first post-cycle probe; a group's is the mean ± standard error over its runs with that probe (n), "
             "\"within noise\" when the mean lies within t standard errors of zero (t: the two-sided 95 % quantile of "
             "Student's t on n − 1 degrees of freedom, 12.71 for 2 runs). A group's onset is the mean ± "
             "SE of its runs' exact onsets, censored runs counted beside it; it enters the scaling fits once, at "
             "the geometric mean of its runs' onsets (a bound when some runs are censored).", "",
             _markdown_table(GROUP_ONSET_COLUMNS, group_onset_rows(groups))]
    if not replicated:
        lines += ["", "No run has a replicate, so no % change has a standard error: the σ in the AUC table is each "
                      "run's probe noise. Runs with other seeds (`seed=`, `data.seed=`) give standard errors."]
    for group in replicated:
        lines += ["", f"### {group['model']}: {', '.join(group['runs'])}", "", _group_change_table(group)]
    return "\n".join(lines)


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
                     *(_auc_cell(probes.get(cycle)) for cycle in cycles),
                     _bounded(run["onset_observation"], "tasks" if run["onset_unit"] == "tasks" else "tokens", ",.0f"),
                     _number(run["training"].get("last_val_loss"), ".4f")))
    columns = ("run", "mitigations", *(f"cycle {cycle} AUC (%)" for cycle in cycles), f"onset ({group[0]['onset_unit']})",
               "last val loss")
    return _markdown_table(columns, rows)


def _auc_value(probe: dict[str, Any]) -> str:
    return "diverged" if probe["diverged"] else f"{probe['auc']:.4f}"


def _auc_cell(probe: dict[str, Any] | None) -> str:
    if probe is None:
        return "–"
    if probe["diverged"]:
        return "diverged"
    return f"{probe['auc']:.4f} ({_change_cell(probe['auc_pct_change'], probe['auc_pct_change_within_noise'])})"


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


def _rho_cell(rho: float | None, interval: Sequence[float] | None, count: str) -> str:
    """ρ with its interval and what it rests on; – and the count where ρ is not given."""
    return f"– ({count})" if rho is None else f"{rho:+.2f} [{interval[0]:+.2f}, {interval[1]:+.2f}] ({count})"


def diagnostics_section(summary: dict[str, Any]) -> str:
    """How well each diagnostic predicts the AUC rise, per run and on average, each ρ with its 95 % interval."""
    rows = []
    for run in summary["runs"]:
        rhos, intervals = run["diagnostics_auc_spearman"], run["diagnostics_auc_spearman_ci"]
        rows.append((run["run"], *(_rho_cell(rhos[name], intervals[name]["ci"], f"n = {intervals[name]['n']}")
                                   for name in DIAGNOSTICS)))
    mean = summary["diagnostics_auc_spearman_mean"]
    rows.append(("mean (runs)", *(_rho_cell(mean[name]["rho"], mean[name]["ci"], f"{mean[name]['runs']} runs, n = "
                                            f"{mean[name]['n']}") for name in DIAGNOSTICS)))
    return "\n".join([
        "## Diagnostics as predictors of plasticity loss", "",
        "Spearman's ρ over cycles between a diagnostic's value at the end of a cycle and the AUC % change of the "
        "probe after that cycle (a diverged probe's counts as +∞, above every finite change): +1 = it rises in step "
        "with the AUC, −1 = it falls as the AUC rises. Beside ρ: its 95 % interval (Fisher's z with the "
        "Bonett–Wright standard error √((1 + ρ²/2)/(n − 3))) and n, the cycles that have both; – when fewer than "
        f"{MIN_POINTS} cycles have both (with 4 the interval about ρ = 0 spans ±0.96) or either side is constant. "
        "The mean over runs averages the runs' ρ where it is given; its interval is that of the mean of their z's, "
        "n their cycles together. The diagnostics over tokens are in the `diagnostics_<run>.png` figures.", "",
        _markdown_table(("run", *DIAGNOSTICS), rows),
    ])


def forgetting_section(summary: dict[str, Any]) -> str:
    """Backward transfer per cycle of every run that evaluated every language at its task ends."""
    runs = [run for run in summary["runs"] if run["forgetting"]]
    lines = ["## Forgetting", "",
             "At every task end the trainer evaluates every training language and, zero-shot, the probe language "
             "(`forgetting_<run>.png`: the task × language loss matrix; `probe_zero_shot.png`). Backward transfer "
             "of a cycle: for each language trained in it (but the last), its loss at the cycle's end minus its "
             "loss right after its own task; positive = forgotten, negative = helped by the languages after it.", ""]
    rows = [(run["run"], str(cycle["cycle"]), _number(cycle["mean_loss_change"], "+.4f"),
             ", ".join(f"{language} {_number(change, '+.3f')}" for language, change in cycle["loss_change"].items()))
            for run in runs for cycle in run["forgetting"]["backward_transfer"]]
    lines.append(_markdown_table(("run", "cycle", "mean loss change", "per language"), rows) if rows else
                 "no run evaluated every language over a whole cycle")
    return "\n".join(lines)


def warnings_section(summary: dict[str, Any]) -> str:
    """The early-warning records the trainer logged, or "none"."""
    rows = [(run["run"], warning["kind"], warning["task"], str(warning["cycle"]), f"{warning['step']:,}",
             f"{warning['tokens']:,}", *(_number(warning[key], ".4g") for key in ("value", "reference", "threshold")),
             warning["message"])
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


def _points(fit: dict[str, Any]) -> str:
    return f"n = {fit['n']} replicate group{'s' * (fit['n'] != 1)} ({fit['runs']} runs) at {fit['sizes']} sizes"


def fit_statements(summary: dict[str, Any]) -> list[str]:
    """One line per fit, stating n; a fit the runs cannot support says why."""
    statements = []
    fit = summary["scaling_fit"]
    if fit is None:
        statements.append(f"no least-squares fit: {summary['scaling_fit_reason']}")
    else:
        statements.append(
            f"least squares over exact onsets, {_points(fit)}: T = {fit['a']:.4g} · P^{fit['b']:.4f}, b in "
            f"{_interval(fit['b_ci'])}, a in [{fit['a_ci'][0]:.4g}, {fit['a_ci'][1]:.4g}] ({fit['confidence']:.0%} "
            f"t-intervals, n − 2 = {fit['n'] - 2} degrees of freedom), σ(log T) = {fit['sigma']:.3g}")
    fit = summary["censored_fit"]
    if fit is None:
        statements.append(f"no censored fit: {summary['censored_fit_reason']}")
    else:
        statements.append(
            f"censored maximum likelihood, {_points(fit)} ({fit['exact']} exact, {fit['right_censored']} "
            f"right-censored, {fit['left_censored']} left-censored): T = {fit['a']:.4g} · P^{fit['b']:.4f}, b in "
            f"{_interval(fit['b_ci'])} ({fit['confidence']:.0%} profile likelihood), σ(log T) = {fit['sigma']:.3g}")
    return statements


def scaling_section(summary: dict[str, Any], task_tokens: int) -> str:
    """The fits with their n, their predictions at the runs' task size, and the published law at the study's."""
    lines = ["## Scaling law of the onset", "",
             "Fits of log T = log a + b log P over the replicate groups of continual runs without mitigations (T "
             "in tasks, P the non-embedding parameters; a group is one point, at its runs' geometric-mean onset), "
             "each only from onsets at 3 or more model sizes. Least squares uses the exact onsets, with "
             "t-intervals on n − 2 degrees of freedom. The censored maximum-likelihood fit (Gaussian errors in "
             "log T) also takes groups without an onset as lower bounds (> X) and rises from the first probe as "
             "upper bounds (≤ X), with a profile-likelihood interval on b.", ""]
    lines += [f"- {statement}" for statement in fit_statements(summary)]
    lines += [f"- {name} prediction (n = {summary[key]['n']}): {_law_text(law_of(summary[key]), task_tokens)}"
              for key, name in (("scaling_fit", "least-squares"), ("censored_fit", "censored")) if summary[key]]
    lines.append(f"- published law (the study's tasks): {_law_text(STUDY_LAW, STUDY_TASK_TOKENS)}")
    return "\n".join(lines)


def render_markdown(summary: dict[str, Any], figures: Sequence[Path]) -> str:
    runs = summary["runs"]
    task_tokens = next((run for run in runs if run["problem"] == "continual"), runs[0])["task_tokens"]
    sections = [
        "# Plasticity report", "",
        "Runs: " + ", ".join(f"`{run['path']}`" for run in runs), "",
        "## Probe AUC", "",
        "AUC is the probe's mean validation loss (trapezoid area over probe training tokens / span; over log "
        "tokens for a log-spaced eval grid, so that every eval interval weighs alike: `auc_rule` in each probe "
        "result). A probe whose validation loss turned NaN or infinite diverged: its AUC reads \"diverged\" and "
        "has no % change. "
        "% change is against the run's reference probe, the one at the end of cycle 1 (none stands in for a "
        "missing one): positive = worse probing = less plasticity; cycle 0 is the probe of the untrained initial "
        "weights, and probes after every task of the first cycles (`probe.every_task_cycles`) carry their task's "
        "cycle. Stationary runs: cycles are probe intervals. The AUC "
        "without step 0 leaves out the loss before any probe training, which the AUC weights by half its first "
        "eval interval (5 % at the study's 11 linear points) and which can decide small differences. A run's "
        "probes share one probe config and eval grid (the report refuses to mix them). σ is the noise of the "
        "run's % changes: the scatter of its post-cycle AUCs about their trend (from second differences, 3 or "
        "more post-cycle probes), times √2 for the two AUCs a change compares, with the degrees of freedom of "
        "that fit; \"within noise\" marks a change within t·σ of zero, t the two-sided 95 % quantile of Student's t "
        "on those degrees of freedom (12.71 on 1, 4.30 on 2, 1.96 with many), as a σ from few probes is itself "
        "uncertain.", "", reference_line(summary), "",
        _markdown_table(AUC_COLUMNS, auc_rows(summary)), "",
        "## Onset of plasticity loss", "",
        f"Definition: {describe_onset_rule(summary['onset_k'])}.", "",
        _markdown_table(ONSET_COLUMNS, onset_rows(summary)), "",
        "\"> X\": no onset yet; the onset lies after the last probe the rule can judge (right-censored). "
        "\"≤ X\": the rise starts at the first post-cycle probe, so the onset lies at or before it "
        "(left-censored); neither is fit as an exact onset. Continual onsets are in tasks, stationary ones in "
        "tokens (their probe intervals are not tasks). The interval runs from the probe before to the probe after "
        "the 95 % residual-bootstrap interval of the break (a break sits on a probe, an onset anywhere between "
        "probes).", "",
        replicates_section(summary), "",
        scaling_section(summary, task_tokens), "",
        "## Training", "",
        _markdown_table(TRAINING_COLUMNS, training_rows(summary)), "",
        forgetting_section(summary), "",
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
        groups = [group for group in summary["replicate_groups"] if group["problem"] == problem and group["n"] > 1]
        if groups:
            figures.append(plots.plot_group_auc_change(groups, problem, out / f"auc_change_replicates_{problem}.png"))
    figures.append(plots.plot_scaling(summary, out / "onset_scaling.png"))
    evaluated = [run for run in summary["runs"] if run["forgetting"]]
    if evaluated:
        figures.append(plots.plot_probe_zero_shot(evaluated, out / "probe_zero_shot.png"))
    figures += [plots.plot_forgetting(run, out / f"forgetting_{run['run']}.png") for run in evaluated]
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
    shown = [AUC_COLUMNS.index(column) for column in TERMINAL_AUC_COLUMNS]
    console.print(_rich_table("Probe AUC per run and cycle (% change vs first post-cycle probe)", TERMINAL_AUC_COLUMNS,
                              [tuple(row[index] for index in shown) for row in auc_rows(summary)]))
    console.print(_rich_table("Onset of plasticity loss", ONSET_COLUMNS, onset_rows(summary)))
    groups = summary["replicate_groups"]
    if any(group["n"] > 1 for group in groups):
        console.print(_rich_table("Onset per replicate group", GROUP_ONSET_COLUMNS, group_onset_rows(groups)))
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
