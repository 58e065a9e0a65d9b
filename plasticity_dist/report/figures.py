"""The report's figures as PNG files, drawn on bare matplotlib `Figure`s (no pyplot state, no display)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from plasticity_dist.analysis.predictors import DIAGNOSTICS, diagnostic_value
from plasticity_dist.analysis.runs import ProbeResult, Run, events
from plasticity_dist.analysis.scaling import STUDY_LAW, fitted_runs, law_of, predict_onset
from plasticity_dist.study.config import STUDY_TASK_TOKENS

DIAGNOSTIC_COLUMNS = 5  # panels per row of the diagnostics figure


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _new_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def _position_axis(problem: str) -> tuple[str, str]:
    """The x key and label of a % change plot: tasks for continual runs (probes may follow single tasks), tokens
    for stationary ones."""
    return ("tasks_trained", "tasks trained") if problem == "continual" else ("tokens", "tokens trained")


def run_label(run: dict[str, Any]) -> str:
    """A legend entry that tells apart runs of one model size: the run's name, its model and size."""
    return f"{run['run']}: {run['model']} ({run['non_embedding_params']:,} params)"


def auc_change_figure(runs: Sequence[dict[str, Any]], problem: str) -> Figure:
    """AUC % change against the reference probe, one colour per run: the study's AUC solid with bars of ± t·σ
    (the run's within-noise band), the AUC without step 0 dotted; the cycle-0 baseline on its own narrow axis,
    so its large change does not flatten the post-cycle ones."""
    x_key, xlabel = _position_axis(problem)
    figure = Figure(figsize=(8, 4.5))
    baseline_axes, axes = figure.subplots(1, 2, width_ratios=[1, 6])
    axes.set(title=f"Probe AUC change ({problem}; positive = less plasticity; bars: ± t·σ)", xlabel=xlabel,
             ylabel="AUC % change vs reference probe")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    baseline_axes.set(title="untrained\n(cycle 0)", xticks=[], ylabel="% change")
    colors = colormaps["viridis"](np.linspace(0, 0.9, max(len(runs), 1)))
    for run, color in zip(sorted(runs, key=lambda run: (run["non_embedding_params"], run["run"])), colors):
        trained = [probe for probe in run["probes"] if probe["cycle"] >= 1]
        for key, style, label in (("auc_pct_change", "o-", run_label(run)),
                                  ("auc_without_step0_pct_change", ":", None)):
            points = [(probe[x_key], probe[key]) for probe in trained if probe[key] is not None]
            noise = run["noise"]["auc"] if key == "auc_pct_change" else None
            axes.errorbar([x for x, _ in points], [change for _, change in points], fmt=style, color=color,
                          label=label, capsize=2, elinewidth=0.8,
                          yerr=None if noise is None else noise["multiple"] * noise["sigma_pct_change"])
        baseline = [probe["auc_pct_change"] for probe in run["probes"]
                    if probe["cycle"] == 0 and probe["auc_pct_change"] is not None]
        baseline_axes.plot([0] * len(baseline), baseline, "o", mfc="none", color=color)
    for panel in (axes, baseline_axes):
        panel.axhline(0, color="black", lw=0.8)
        panel.grid(alpha=0.3)
    if runs:
        axes.legend(fontsize=8, title="dotted: AUC without step 0", title_fontsize=8)
    return figure


def plot_auc_change(runs: Sequence[dict[str, Any]], problem: str, path: Path) -> Path:
    """`auc_change_figure` as a PNG."""
    return _save(auc_change_figure(runs, problem), path)


def group_label(group: dict[str, Any]) -> str:
    return f"{group['model']} ({group['non_embedding_params']:,} params), n = {group['n']}: {', '.join(group['runs'])}"


def group_auc_change_figure(groups: Sequence[dict[str, Any]], problem: str) -> Figure:
    """Each replicate group's mean AUC % change per post-cycle probe with its 95 % t-interval as a band (none
    where only one run has the probe: one run has no standard error)."""
    x_key, xlabel = _position_axis(problem)
    figure, axes = _new_axes(f"Probe AUC change of replicate groups ({problem}; band: 95 % t-interval)", xlabel,
                             "mean AUC % change vs reference probe")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    colors = colormaps["viridis"](np.linspace(0, 0.9, max(len(groups), 1)))
    for group, color in zip(groups, colors):
        points = [point for point in group["cycles"] if point["cycle"] >= 1 and point["auc_pct_change_mean"] is not None]
        axes.plot([point[x_key] for point in points], [point["auc_pct_change_mean"] for point in points], "o-",
                  color=color, label=group_label(group))
        banded = [point for point in points if point["auc_pct_change_ci95"] is not None]
        if banded:
            axes.fill_between([point[x_key] for point in banded], [point["auc_pct_change_ci95"][0] for point in banded],
                              [point["auc_pct_change_ci95"][1] for point in banded], color=color, alpha=0.25)
    axes.axhline(0, color="black", lw=0.8)
    axes.legend(fontsize=8)
    return figure


def plot_group_auc_change(groups: Sequence[dict[str, Any]], problem: str, path: Path) -> Path:
    """`group_auc_change_figure` as a PNG."""
    return _save(group_auc_change_figure(groups, problem), path)


def _auc_text(probe: ProbeResult) -> str:
    return "diverged" if probe.diverged else f"{probe.auc:.3f}"


def plot_probe_curves(run: Run, path: Path) -> Path:
    """Every probe's validation loss over its training tokens, coloured by cycle (baseline dashed); a diverged
    probe's line ends at its last finite loss."""
    figure, axes = _new_axes(f"Probe validation loss: {run.name} ({run.model})", "probe training tokens",
                             "validation loss")
    last_cycle = max((probe.cycle for probe in run.probes), default=1)
    for probe in run.probes:
        style = {"ls": "--", "color": "grey"} if probe.cycle == 0 else {
            "color": colormaps["viridis"](0.9 * (probe.cycle - 1) / max(last_cycle - 1, 1))}
        axes.plot(probe.eval_tokens, probe.val_losses, marker="o", ms=3, **style,  # null losses: gaps
                  label=f"cycle {probe.cycle} (AUC {_auc_text(probe)})")
    if run.probes:
        axes.legend(fontsize=8)
    return _save(figure, path)


def forgetting_figure(run: dict[str, Any]) -> Figure:
    """A run's task × language validation loss matrix as a heatmap (rows: task ends; columns: the training
    languages, then the probe language zero-shot)."""
    forgetting = run["forgetting"]
    columns = [*forgetting["languages"], f"{forgetting['probe_language']} (probe, zero-shot)"]
    matrix = np.array([[row["val_losses"].get(language) for language in forgetting["languages"]]
                       + [row["probe_val_loss"]] for row in forgetting["task_ends"]], dtype=float)
    figure = Figure(figsize=(1.2 * len(columns) + 3, 0.3 * len(matrix) + 2.5))
    axes = figure.subplots()
    image = axes.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
    figure.colorbar(image, ax=axes, label="validation loss")
    axes.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=8)
    rows = forgetting["task_ends"]
    step = max(1, len(rows) // 30)
    axes.set_yticks(range(0, len(rows), step),
                    [f"{rows[i]['task']} (cycle {rows[i]['cycle']})" for i in range(0, len(rows), step)], fontsize=7)
    axes.set(title=f"Loss on every language at each task end: {run['run']} ({run['model']})",
             xlabel="evaluated language", ylabel="task just trained")
    return figure


def plot_forgetting(run: dict[str, Any], path: Path) -> Path:
    """`forgetting_figure` as a PNG."""
    return _save(forgetting_figure(run), path)


def plot_probe_zero_shot(runs: Sequence[dict[str, Any]], path: Path) -> Path:
    """The probe language's zero-shot validation loss at every task end, over tokens trained, one line per run."""
    figure, axes = _new_axes("Probe language, zero-shot (no probe training)", "tokens trained", "validation loss")
    for run in runs:
        rows = [row for row in run["forgetting"]["task_ends"] if row["probe_val_loss"] is not None]
        axes.plot([row["tokens"] for row in rows], [row["probe_val_loss"] for row in rows], ".-", label=run_label(run))
    axes.legend(fontsize=8)
    return _save(figure, path)


def plot_training_loss(run: Run, path: Path) -> Path:
    """Training loss over tokens seen, with a dotted line at every task end."""
    figure, axes = _new_axes(f"Training loss: {run.name} ({run.model})", "tokens trained", "training loss")
    steps = events(run.metrics, "step")
    axes.plot([record["tokens"] for record in steps], [record["loss"] for record in steps], lw=1, label="loss")
    for i, record in enumerate(events(run.metrics, "task_end")):
        axes.axvline(record["tokens"], color="grey", ls=":", lw=0.8, label="task end" if i == 0 else None)
    axes.legend(fontsize=8)
    return _save(figure, path)


def _plot_probe_auc(run: Run, axes: Axes) -> None:
    """Probe AUC against the tokens trained before the probe, diverged probes as crosses on the top edge; the
    untrained baseline's AUC in the title, so that it does not flatten the post-cycle AUCs."""
    trained = [probe for probe in run.probes if probe.cycle >= 1]
    baseline = [_auc_text(probe) for probe in run.probes if probe.cycle == 0]
    axes.plot([probe.tokens for probe in trained], [probe.auc for probe in trained], "o-", color="tab:red", ms=4)
    diverged = [probe.tokens for probe in trained if probe.diverged]
    if diverged:  # an empty line off the clip box spoils tight_layout
        axes.plot(diverged, [1] * len(diverged), "x", color="tab:red", transform=axes.get_xaxis_transform(),
                  clip_on=False)
    axes.set_title(f"probe AUC (untrained: {', '.join(baseline) or '–'})", fontsize=9)


def plot_diagnostics(run: Run, path: Path) -> Path:
    """Each diagnostic total against tokens in a small panel, beside the probe AUC; task ends dotted, cycle
    ends (where the probes are taken) dashed."""
    records = events(run.metrics, "diagnostics")
    per_cycle = run.tasks_per_cycle if run.problem == "continual" else 1
    cycle_ends = sorted({probe.tokens for probe in run.probes
                         if probe.cycle >= 1 and probe.tasks_trained == probe.cycle * per_cycle})
    task_ends = [record["tokens"] for record in events(run.metrics, "task_end") if record["tokens"] not in cycle_ends]
    rows = math.ceil((len(DIAGNOSTICS) + 1) / DIAGNOSTIC_COLUMNS)
    figure = Figure(figsize=(3.3 * DIAGNOSTIC_COLUMNS, 2.6 * rows + 0.6))
    panels = figure.subplots(rows, DIAGNOSTIC_COLUMNS, sharex=True, squeeze=False).ravel()
    for axes, name in zip(panels, DIAGNOSTICS):
        points = [(record["tokens"], value) for record in records
                  if (value := diagnostic_value(record, name)) is not None]
        axes.plot([tokens for tokens, _ in points], [value for _, value in points], lw=1, marker=".", ms=3)
        if not points:
            axes.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axes.transAxes, color="grey")
            axes.set_yticks([])
        axes.set_title(name, fontsize=9)
    _plot_probe_auc(run, panels[len(DIAGNOSTICS)])
    for axes in panels[:len(DIAGNOSTICS) + 1]:
        for boundaries, style in ((task_ends, ":"), (cycle_ends, "--")):
            axes.vlines(boundaries, 0, 1, transform=axes.get_xaxis_transform(), colors="grey", linestyles=style,
                        lw=0.7)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    for axes in panels[len(DIAGNOSTICS) + 1:]:
        axes.set_visible(False)
    for axes in panels[-DIAGNOSTIC_COLUMNS:]:
        axes.set_xlabel("tokens trained", fontsize=8)
    figure.suptitle(f"Diagnostics: {run.name} ({run.model}); dotted: task ends, dashed: cycle ends (probes)")
    return _save(figure, path)


def scaling_figure(summary: dict[str, Any]) -> Figure:
    """Onset (tasks) against non-embedding parameters, log-log: each fitted run's onset interval as a bar (an open
    end as an arrow to the edge), its best break as a dot; the fit with its 95 % confidence band over the sizes it
    was fit on; the published law only where every run's task has the study's size (its tasks are 5e9 tokens)."""
    runs = fitted_runs(summary["runs"])
    same_unit = bool(runs) and all(run["task_tokens"] == STUDY_TASK_TOKENS for run in runs)
    figure, axes = _new_axes("Onset of plasticity loss" + ("" if same_unit else " (published law not drawn: other "
                                                           "task size)"), "non-embedding parameters",
                             "onset (tasks trained)")
    fit = summary["scaling_fit"]
    sizes = [run["non_embedding_params"] for run in runs]
    if fit is not None:
        law = law_of(fit)
        grid = np.geomspace(*law.params_range, 50)
        axes.plot(grid, [predict_onset(p, law) for p in grid], "-", color="tab:blue",
                  label=f"fit (n = {fit['runs']} runs): T = {law.a:.3g}·P^{law.b:.3f}, b in "
                        f"[{fit['b_ci'][0]:.3f}, {fit['b_ci'][1]:.3f}]")
        axes.fill_between(grid, *zip(*(law.band(p) for p in grid)), color="tab:blue", alpha=0.2,
                          label="95 % confidence band")
    if same_unit:
        grid = np.geomspace(min(sizes), max(sizes), 50)
        axes.plot(grid, [predict_onset(p) for p in grid], "--", color="grey",
                  label=f"published: T = {STUDY_LAW.a:.3g}·P^{STUDY_LAW.b:.4g} (no interval stated)")
    bounds = [value for run in runs for value in run["onset_observation"]["tasks"] if value]
    bottom, top = (min(bounds) / 3, max(bounds) * 3) if bounds else (1, 10)
    for index, run in enumerate(sorted(runs, key=lambda run: (run["non_embedding_params"], run["run"]))):
        low, high = run["onset_observation"]["tasks"]
        x = run["non_embedding_params"] * 1.04 ** (index % 3 - 1)  # replicate seeds side by side
        axes.vlines(x, low or bottom, high or top, color="tab:red", lw=1.5)
        if low == 0:
            axes.plot(x, bottom, "v", color="tab:red", ms=5)
        if high is None:
            axes.plot(x, top, "^", color="tab:red", ms=5)
        if run["onset"] is not None:
            axes.plot(x, run["onset"], "o", color="tab:red", ms=4)
    axes.plot([], [], color="tab:red", marker="o", label="run: onset interval (arrow: open end), best break")
    axes.set(xscale="log", yscale="log", ylim=(bottom, top))
    axes.legend(fontsize=7)
    return figure


def plot_scaling(summary: dict[str, Any], path: Path) -> Path:
    """`scaling_figure` as a PNG."""
    return _save(scaling_figure(summary), path)


def draw_figures(runs: Sequence[Run], summary: dict[str, Any], out: Path) -> list[Path]:
    """Every figure of the report; runs without probes or metrics skip only the plots that need them."""
    figures = []
    for problem in ("continual", "stationary"):
        records = [run for run in summary["runs"] if run["problem"] == problem and run["probes"]]
        if records:
            figures.append(plot_auc_change(records, problem, out / f"auc_change_{problem}.png"))
        groups = [group for group in summary["replicate_groups"] if group["problem"] == problem and group["n"] > 1]
        if groups:
            figures.append(plot_group_auc_change(groups, problem, out / f"auc_change_replicates_{problem}.png"))
    figures.append(plot_scaling(summary, out / "onset_scaling.png"))
    evaluated = [run for run in summary["runs"] if run["forgetting"]]
    if evaluated:
        figures.append(plot_probe_zero_shot(evaluated, out / "probe_zero_shot.png"))
    figures += [plot_forgetting(run, out / f"forgetting_{run['run']}.png") for run in evaluated]
    for run in runs:
        if run.probes:
            figures.append(plot_probe_curves(run, out / f"probe_curves_{run.name}.png"))
        if events(run.metrics, "step"):
            figures.append(plot_training_loss(run, out / f"training_loss_{run.name}.png"))
        if events(run.metrics, "diagnostics"):
            figures.append(plot_diagnostics(run, out / f"diagnostics_{run.name}.png"))
    return figures
