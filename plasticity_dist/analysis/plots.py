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

from plasticity_dist.analysis.predictors import DIAGNOSTICS, diagnostic_value
from plasticity_dist.analysis.runs import ProbeResult, Run, events
from plasticity_dist.analysis.scaling import STUDY_LAW, fitted_groups, law_of, predict_onset

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


def run_label(run: dict[str, Any]) -> str:
    """A legend entry that tells apart runs of one model size: the run's name, its model and size."""
    return f"{run['run']}: {run['model']} ({run['non_embedding_params']:,} params)"


def auc_change_figure(runs: Sequence[dict[str, Any]], problem: str) -> Figure:
    """AUC % change against the first post-cycle probe, one colour per run: the study's AUC solid, the AUC
    without step 0 dotted; the cycle-0 baseline on its own narrow axis, so its large change does not flatten
    the post-cycle ones."""
    x_key, xlabel = ("cycle", "cycle") if problem == "continual" else ("tokens", "tokens trained")
    figure = Figure(figsize=(8, 4.5))
    baseline_axes, axes = figure.subplots(1, 2, width_ratios=[1, 6])
    axes.set(title=f"Probe AUC change ({problem}; positive = less plasticity)", xlabel=xlabel,
             ylabel="AUC % change vs first post-cycle probe")
    baseline_axes.set(title="untrained\n(cycle 0)", xticks=[], ylabel="% change")
    colors = colormaps["viridis"](np.linspace(0, 0.9, max(len(runs), 1)))
    for run, color in zip(sorted(runs, key=lambda run: (run["non_embedding_params"], run["run"])), colors):
        trained = [probe for probe in run["probes"] if probe["cycle"] >= 1]
        for key, style, label in (("auc_pct_change", "o-", run_label(run)),
                                  ("auc_without_step0_pct_change", ":", None)):
            points = [(probe[x_key], probe[key]) for probe in trained if probe[key] is not None]
            axes.plot([x for x, _ in points], [change for _, change in points], style, color=color, label=label)
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
    """Each replicate group's mean AUC % change per post-cycle probe with a band of ± one standard error."""
    x_key, xlabel = ("cycle", "cycle") if problem == "continual" else ("tokens", "tokens trained")
    figure, axes = _new_axes(f"Probe AUC change of replicate groups ({problem}; band: ± 1 standard error)", xlabel,
                             "mean AUC % change vs first post-cycle probe")
    colors = colormaps["viridis"](np.linspace(0, 0.9, max(len(groups), 1)))
    for group, color in zip(groups, colors):
        cycles = [cycle for cycle in group["cycles"] if cycle["cycle"] >= 1 and cycle["auc_pct_change_mean"] is not None]
        x = np.array([cycle[x_key] for cycle in cycles], float)
        mean = np.array([cycle["auc_pct_change_mean"] for cycle in cycles])
        se = np.array([cycle["auc_pct_change_se"] or 0.0 for cycle in cycles])
        axes.plot(x, mean, "o-", color=color, label=group_label(group))
        axes.fill_between(x, mean - se, mean + se, color=color, alpha=0.25)
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
    cycle_ends = sorted({probe.tokens for probe in run.probes if probe.cycle >= 1})
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
    """Onset (tasks) against non-embedding parameters, log-log, one point per replicate group the law is fit on
    (its runs' geometric-mean onset): exact onsets as dots, no onset yet as a lower bound (arrow up), a rise
    from the first probe as an upper bound (arrow down); the fits that the groups support and the published law."""
    figure, axes = _new_axes("Onset of plasticity loss", "non-embedding parameters", "onset (tasks trained)")
    groups = fitted_groups(summary["replicate_groups"])
    sizes = [run["non_embedding_params"] for run in summary["runs"]] + [1e9]
    grid = np.geomspace(min(sizes), max(sizes), 50)
    laws = [(STUDY_LAW, "--", "grey", "published")]
    laws += [(law_of(summary[key]), style, color, f"{name} (n = {summary[key]['n']})")
             for key, style, color, name in (("scaling_fit", "-", "tab:blue", "least squares"),
                                             ("censored_fit", "-.", "tab:orange", "censored ML"))
             if summary[key] is not None]
    for law, style, color, name in laws:
        axes.plot(grid, [predict_onset(p, law) for p in grid], style, color=color,
                  label=f"{name}: T = {law.a:.3g}·P^{law.b:.4g}")
    for censoring, arrow, label in (("exact", {}, "onset"), ("right", {"lolims": True}, "no onset yet: lower bound"),
                                    ("left", {"uplims": True}, "rise from the first probe: upper bound")):
        points = [(group["non_embedding_params"], group["onset_observation"]["tasks"]) for group in groups
                  if group["onset_observation"]["censoring"] == censoring]
        if points:
            params, tasks = np.array(points, float).T
            axes.errorbar(params, tasks, yerr=0.5 * tasks if arrow else None, fmt="o", color="tab:red",
                          mfc="tab:red" if censoring == "exact" else "none", capsize=3, **arrow,
                          label=f"{label} (n = {len(points)})")
    axes.set(xscale="log", yscale="log")
    axes.legend(fontsize=8)
    return figure


def plot_scaling(summary: dict[str, Any], path: Path) -> Path:
    """`scaling_figure` as a PNG."""
    return _save(scaling_figure(summary), path)
