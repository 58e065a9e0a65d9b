"""`plasticity-dist report`: from run directories to `report.md`, `summary.json`, PNG plots and a terminal table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from plasticity_dist.analysis.correlation import MIN_POINTS
from plasticity_dist.analysis.mitigations import shown_settings
from plasticity_dist.analysis.onset import describe_onset_rule
from plasticity_dist.analysis.predictors import DIAGNOSTICS
from plasticity_dist.analysis.replicates import SEED_KEYS
from plasticity_dist.analysis.runs import load_run
from plasticity_dist.analysis.scaling import STUDY_LAW, PowerLaw, law_of, law_problem, predict_onset
from plasticity_dist.analysis.summary import build_summary
from plasticity_dist.common.fileio import atomic_write_json, atomic_write_text
from plasticity_dist.probe.noise import describe_noise_rule
from plasticity_dist.report.figures import draw_figures
from plasticity_dist.report.tables import (AUC_COLUMNS, GROUP_ONSET_COLUMNS, ONSET_COLUMNS, TRAINING_COLUMNS,
                                           WARNING_COLUMNS, auc_cell, auc_rows, fit_statements,
                                           group_onset_rows, interval_text, mean_cell, number_cell, observation_cell,
                                           onset_rows, print_summary, probe_design_lines, reference_line,
                                           training_rows)
from plasticity_dist.study.config import STUDY_TASK_TOKENS

PREDICTION_PARAMS = 1e9


def _group_change_table(group: dict[str, Any]) -> str:
    rows = [("0 (baseline)" if cycle["cycle"] == 0 else str(cycle["cycle"]), str(cycle["tasks_trained"]),
             f"{cycle['tokens']:,}", str(cycle["n"]),
             *(mean_cell(cycle[f"{change}_mean"], cycle[f"{change}_se"], "+.2f")
               + _ci_text(cycle[f"{change}_ci95"])
               + (" (within noise)" if cycle[f"{change}_within_noise"] and cycle["cycle"] > 1 else "")
               for change in ("auc_pct_change", "auc_without_step0_pct_change")))
            for cycle in group["cycles"]]
    return _markdown_table(("cycle", "tasks", "tokens", "n", "% change: mean ± SE [95 % CI]",
                            "% change w/o step 0: mean ± SE [95 % CI]"), rows)


def _ci_text(interval: Sequence[float] | None) -> str:
    return "" if interval is None else f" [{interval[0]:+.2f}, {interval[1]:+.2f}]"


def replicates_section(summary: dict[str, Any]) -> str:
    """Groups of runs that differ only in their seeds: per-cycle % changes and onsets as mean ± SE with n."""
    groups = summary["replicate_groups"]
    replicated = [group for group in groups if group["n"] > 1]
    seed_keys = ", ".join(f"`{key}`" for key in SEED_KEYS)
    lines = ["## Replicate groups", "",
             f"Runs that differ only in {seed_keys} form a group. Each % change is against the run's own "
             "reference probe; a group's is the mean ± standard error over its runs with that probe (n) and its 95 % "
             "t-interval (n − 1 degrees of freedom: ± 12.71 SE for 2 runs, as ± 1 SE would be only a 50 % interval); "
             "\"within noise\" when the mean lies within t standard errors of zero, t family-wise at 95 % over the "
             "group's compared probes (Bonferroni). A group's onset is the mean ± SE of the best breaks of its runs "
             "whose onset the probes pin to an interval, the other runs counted beside it; the scaling fit takes "
             "every run on its own.", "",
             _markdown_table(GROUP_ONSET_COLUMNS, group_onset_rows(groups))]
    if not replicated:
        lines += ["", "No run has a replicate, so no % change has a standard error: the σ in the AUC table is each "
                      f"run's probe noise. Runs with other seeds ({seed_keys}) give standard errors."]
    for group in replicated:
        lines += ["", f"### {group['model']}: {', '.join(group['runs'])}", "", _group_change_table(group)]
    return "\n".join(lines)


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _setting_cell(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _comparison_table(group: Sequence[dict[str, Any]], settings: Sequence[str]) -> str:
    """Runs that differ only in their treatment, the treatment `settings` beside the mitigations: AUC and its %
    change per probe point (a cycle's end, or a task of the first cycles where probes follow every task), onset,
    last task-end val loss."""
    points = sorted({(probe["tasks_trained"], probe["cycle"]) for run in group for probe in run["probes"]
                     if probe["cycle"] >= 1})
    rows = []
    for run in group:
        probes = {probe["tasks_trained"]: probe for probe in run["probes"]}
        rows.append((run["run"], ", ".join(run["mitigations"]) or "none",
                     *(_setting_cell(run["treatment_settings"][key]) for key in settings),
                     *(auc_cell(probes.get(tasks)) for tasks, _ in points),
                     observation_cell(run, run["onset_unit"]),
                     number_cell(run["training"].get("last_val_loss"), ".4f")))
    per_cycle = group[0]["tasks_per_cycle"] if group[0]["problem"] == "continual" else 1
    columns = ("run", "mitigations", *settings,
               *(f"cycle {cycle} AUC (%)" if tasks == cycle * per_cycle else f"task {tasks} (cycle {cycle}) AUC (%)"
                 for tasks, cycle in points), f"onset ({group[0]['onset_unit']})", "last val loss")
    return _markdown_table(columns, rows)




def _onset_counts_cell(row: dict[str, Any]) -> str:
    """A ranked treatment's onset: mean ± SE of its pinned runs, then how many runs are of each kind."""
    mean = mean_cell(row["onset_mean"], row["onset_se"], ",.4g") + (f" {row['onset_unit']}" if row["onset_mean"] else "")
    return (f"{mean} ({row['onset_interval_n']} pinned, {row['onset_left_censored']} ≤, "
            f"{row['onset_right_censored']} >, {row['onset_undetermined']} undetermined)")


def _ranking_table(ranking: dict[str, Any]) -> str:
    """One row per treatment, best first: n, AUC % change and % vs fresh init, onset, training loss and its cost."""
    rows = []
    for rank, row in enumerate(ranking["treatments"], start=1):
        cost = row["loss_cost_pct"]
        rows.append((str(rank), ", ".join(row["mitigations"]) or "none",
                     *(_setting_cell(row["treatment_settings"][key]) for key in ranking["settings"]), str(row["n"]),
                     *(mean_cell(row[key]["mean"], row[key]["se"], "+.2f") for key in ("auc_pct_change", "auc_vs_fresh_pct")),
                     _onset_counts_cell(row), mean_cell(row["last_cycle_loss"]["mean"], row["last_cycle_loss"]["se"], ".4f"),
                     "reference" if row["runs"] == ranking["reference"] else
                     "–" if cost is None else mean_cell(cost["mean"], cost["se"], "+.2f") + f" (n = {cost['n']})"))
    tasks = ranking["tasks_trained"]
    return _markdown_table(("rank", "mitigations", *ranking["settings"], "n", f"AUC % change at task {tasks}: mean ± SE",
                            f"% vs fresh init at task {tasks}", "onset: mean ± SE (pinned runs; others by kind)",
                            "training loss, last cycle", "training-loss cost (%)"), rows)


def mitigations_section(summary: dict[str, Any]) -> str:
    """Each run's mitigations, a comparison of every group of runs that differ only in them (and in the swept
    settings) and, over seeds, a ranking of every set of replicate groups that do."""
    runs = {run["run"]: run for run in summary["runs"]}
    swept = summary["swept_settings"]
    differ_in = " and ".join(["their mitigations", *swept])
    lines = ["## Mitigations", "",
             "Active mitigations with their hyperparameters (re-warming is `optimizer.schedule=rewarm_cosine`)"
             + (f"; swept settings: {', '.join(swept)}, one treatment per value" if swept else "") + ".", "",
             _markdown_table(("run", "mitigations", *swept),
                             [(run["run"], ", ".join(run["mitigations"]) or "none",
                               *(_setting_cell(run["treatment_settings"][key]) for key in swept))
                              for run in summary["runs"]])]
    for names in summary["mitigation_groups"]:
        group = [runs[name] for name in names]
        lines += ["", f"### Runs that differ only in {differ_in}: {', '.join(names)}", "",
                  "Each cell is the probe's AUC and, in brackets, its % change against the run's own first "
                  "reference probe; the last val loss is that of the last task end.", "",
                  _comparison_table(group, shown_settings(group, swept))]
    for ranking in summary["mitigation_rankings"]:
        reference = ranking["reference"]
        lines += ["", f"### Ranking over seeds: runs that differ only in "
                      f"{', '.join(['their mitigations', *swept])} and their seeds", "",
                  f"Runs: {', '.join(ranking['runs'])}. One row per treatment (a replicate group), ranked by its mean "
                  f"AUC % change at task {ranking['tasks_trained']}, the last probe every run has (lower: more "
                  "plasticity kept). Each figure is the mean ± standard error over the treatment's runs (n); the "
                  "onset is its replicate group's; the training loss is the mean of the logged training losses of "
                  "each run's last cycle, and its cost the % change against the reference run of the same seeds (same "
                  "initial weights, data order and permutations), mean ± SE over those pairs (n); the reference is "
                  "the treatment without mitigations that is not a sweep's: "
                  + (", ".join(reference) if reference else "none among these runs, so no cost") + ".", "",
                  _ranking_table(ranking)]
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
    rows = [(run["run"], str(cycle["cycle"]), number_cell(cycle["mean_loss_change"], "+.4f"),
             ", ".join(f"{language} {number_cell(change, '+.3f')}" for language, change in cycle["loss_change"].items()))
            for run in runs for cycle in run["forgetting"]["backward_transfer"]]
    lines.append(_markdown_table(("run", "cycle", "mean loss change", "per language"), rows) if rows else
                 "no run evaluated every language over a whole cycle")
    return "\n".join(lines)


def warnings_section(summary: dict[str, Any]) -> str:
    """The early-warning records the trainer logged, or "none"."""
    rows = [(run["run"], warning["kind"], warning["task"], str(warning["cycle"]), f"{warning['step']:,}",
             f"{warning['tokens']:,}", *(number_cell(warning[key], ".4g") for key in ("value", "reference", "threshold")),
             warning["message"])
            for run in summary["runs"] for warning in run["warnings"]]
    return "\n".join(["## Early warnings", "", "Learning-stagnation warnings logged during training.", "",
                      _markdown_table(WARNING_COLUMNS, rows) if rows else "none"])


def _prediction_text(law: PowerLaw, task_tokens: int) -> str:
    """The fit's onset at PREDICTION_PARAMS with its prediction interval, and how far it extrapolates."""
    tasks = predict_onset(PREDICTION_PARAMS, law)
    low, high = law.prediction_interval(PREDICTION_PARAMS)
    largest = law.params_range[1]
    return (f"{PREDICTION_PARAMS:.0e} parameters → {tasks:,.0f} tasks, 95 % prediction interval {interval_text((low, high), ',.0f')} "
            f"tasks ({tasks * task_tokens:.3g} tokens at {task_tokens:.3g} tokens per task), an extrapolation "
            f"{PREDICTION_PARAMS / largest:.1f}× beyond the largest size fitted ({largest:,.0f}): the interval holds only "
            "if the law does out there")


def scaling_section(summary: dict[str, Any], task_tokens: int) -> str:
    """The fit with its n and intervals, its prediction at the runs' task size, and the published law at the study's."""
    lines = ["## Scaling law of the onset", "",
             f"One fit of log T = log a + b log P + ε, ε ~ N(0, σ²), over the {law_problem(summary['runs'])} runs "
             "without mitigations (T in "
             "tasks of the runs' size, P the non-embedding parameters), each run one observation of the interval its "
             "onset lies in (an interval, at or before a bound, or after one); runs whose onset is undetermined are "
             "left out. It needs bounded onsets at 3 or more sizes and an interval on b that the data close. "
             "`bench/law_recovery.py` measures its bias and coverage on simulated studies that follow a known law.", ""]
    lines += [f"- {statement}" for statement in fit_statements(summary)]
    if summary["scaling_fit"]:
        lines.append(f"- prediction: {_prediction_text(law_of(summary['scaling_fit']), task_tokens)}")
    published = predict_onset(PREDICTION_PARAMS)
    lines.append(f"- published law: T = {STUDY_LAW.a:.4g} · P^{STUDY_LAW.b:.4f} in the study's tasks of "
                 f"{STUDY_TASK_TOKENS:.0e} tokens; {PREDICTION_PARAMS:.0e} parameters → {published:,.0f} tasks "
                 f"({published * STUDY_TASK_TOKENS:.3g} tokens). The study states no interval for its law, so none "
                 "is given here; compare it with a fit only in tokens, or in tasks of the study's size.")
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
        "cycle. Stationary runs: cycles are probe intervals. % vs fresh init compares each probe with the same probe "
        "(same data, order and permutation) from freshly initialised weights: the run's own cycle-0 probe of its "
        "initial weights; positive = learns worse than from scratch. The AUC "
        "without step 0 leaves out the loss before any probe training, which the AUC weights by half its first "
        "eval interval (5 % at the study's 11 linear points) and which can decide small differences. A run's "
        "probes share one probe config and eval grid (the report refuses to mix them). " + describe_noise_rule() + ".",
        "", reference_line(summary), "", *(f"{line}\n" for line in probe_design_lines(summary)),
        _markdown_table(AUC_COLUMNS, auc_rows(summary)), "",
        "## Onset of plasticity loss", "",
        f"Definition: {describe_onset_rule(summary['onset_k'])}.", "",
        _markdown_table(ONSET_COLUMNS, onset_rows(summary)), "",
        "Onsets are intervals (low, high]: \"> X\", no sustained rise where one of the stated size would have been "
        "found, so the onset lies after X (right-censored); \"≤ X\", a rise from the first probe or a break near "
        "it, so the onset lies at or before X (left-censored); \"–\", undetermined, with the reason (these bound "
        "nothing and stay out of the scaling fit). The best break is the fit's onset; the interval is where the "
        "profile likelihood of the onset lies within the 95 % F cutoff of its best, reaching to the neighbouring "
        "candidate breaks (the onset lies anywhere between them). Continual onsets are in tasks, stationary ones "
        "in tokens (their probe intervals are not tasks).", "",
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
