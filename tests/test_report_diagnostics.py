"""The report's diagnostics, mitigations and early warnings, on hand-built run directories, through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from PIL import Image

from fabricated_runs import TASKS, make_run
from plasticity_dist.analysis.censoring import OnsetObservation
from plasticity_dist.analysis.correlation import mean_interval, spearman
from plasticity_dist.analysis.predictors import DIAGNOSTICS, auc_spearman
from plasticity_dist.cli import main

CYCLES = 5
FEATURE_NORMS = (1.0, 2.0, 2.0, 3.0, 4.0)  # one tie; against a strictly rising AUC, rho = 9.5 / sqrt(95)
SHRINK_AND_REWARM = ["shrink_perturb(shrink=0.4, noise_std=0.001)", "rewarming(warmup_steps=100, min_lr_ratio=0.1)"]
WARNING = {"kind": "probe_auc", "step": 24, "tokens": 6000, "task": "zh", "task_index": 5, "cycle": 3, "value": 3.3,
           "reference": 3.1, "threshold": 3.255, "message": "probe after cycle 3: AUC 3.3000 is +6.5% vs 3.1000"}


def rising_auc(cycle: int) -> float:
    return 3.0 + 0.1 * cycle


def cycle_diagnostics(cycle: int, task_index: int, task_end: bool) -> dict[str, float | None]:
    """End of a cycle: dormant ratio rises and srank falls with the AUC, feature norm ties once, param norm is
    constant, update ratio null, grad norm logged in 2 cycles only, attention entropy never. Elsewhere: values
    that would spoil those correlations if the report used them."""
    if not (task_end and task_index % len(TASKS) == len(TASKS) - 1):
        return {"dormant_ratio": 1.0 - 0.1 * cycle, "srank": 10.0 * cycle, "feature_norm": -cycle, "param_norm": cycle}
    return {"dormant_ratio": 0.1 * cycle, "dormant_ratio_l0": 0.2 * cycle, "srank": 100.0 - cycle,
            "srank_l0": 50.0, "effective_rank": 90.0 - cycle, "feature_norm": FEATURE_NORMS[cycle - 1],
            "param_norm": 7.0, "update_ratio": None, "grad_norm": 1.0 if cycle <= 2 else None,
            "dist_from_init": float(cycle)}


def make_old_run(root: Path) -> Path:
    """A run from before diagnostics: its config.yaml has no diagnostics, mitigations or early_warning."""
    run_dir = make_run(root, "250K", cycles=6, name="old")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    for section in ("diagnostics", "mitigations", "early_warning"):
        del config[section]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run_dir


def report_on(runs: list[Path], out: Path) -> tuple[str, dict]:
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    return (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = [
        make_run(root, "100K", CYCLES, name="baseline", aucs=rising_auc, diagnostics=cycle_diagnostics,
                 warnings=[WARNING]),
        # where probes run and whether TensorBoard logs do not make runs incomparable
        make_run(root, "100K", CYCLES, name="shrink", aucs=lambda cycle: 3.0 + 0.05 * cycle,
                 diagnostics=cycle_diagnostics,
                 overrides=["mitigations.shrink_perturb.enabled=true", "optimizer.schedule=rewarm_cosine",
                            "probe.executor=inline", "tensorboard=true"]),
        make_run(root, "100K", CYCLES, name="redo",
                 overrides=["mitigations.redo.enabled=true", "mitigations.redo.threshold=0.05"]),
        make_run(root, "100K", CYCLES, name="other-seed", overrides=["seed=1", "mitigations.cbp.enabled=true"]),
        make_old_run(root),
    ]
    out = root / "report"
    markdown, summary = report_on(runs, out)
    return out, markdown, {run["run"]: run for run in summary["runs"]}, summary


def test_spearman_of_monotone_reversed_and_tied_values():
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [16, 9, 4, 1]) == pytest.approx(-1.0)
    # ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: covariance 4.5, variances 4.5 and 5 (sums of squares about 2.5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_spearman_is_undefined_below_three_pairs_or_for_constant_values():
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([3, 3, 3], [1, 2, 3]) is None and spearman([1, 2, 3], [0, 0, 0]) is None
    with pytest.raises(ValueError, match="paired"):
        spearman([1, 2, 3], [1, 2])


def test_each_diagnostic_is_correlated_with_the_auc_change_at_cycle_ends_only(report):
    _, _, runs, _ = report
    correlations = runs["baseline"]["diagnostics_auc_spearman"]
    assert set(correlations) == set(DIAGNOSTICS)
    assert correlations["dormant_ratio"] == pytest.approx(1.0)
    assert correlations["srank"] == pytest.approx(-1.0) and correlations["effective_rank"] == pytest.approx(-1.0)
    assert correlations["dist_from_init"] == pytest.approx(1.0)
    assert correlations["feature_norm"] == pytest.approx(9.5 / math.sqrt(95))
    for undefined in ("param_norm", "update_ratio", "grad_norm", "attn_entropy"):
        assert correlations[undefined] is None, undefined


def test_each_rho_has_its_interval_and_n_beside_it_and_none_below_5_cycles(report):
    _, markdown, runs, _ = report
    intervals = runs["baseline"]["diagnostics_auc_spearman_ci"]
    assert set(intervals) == set(DIAGNOSTICS)
    low, high = mean_interval([9.5 / math.sqrt(95)], [CYCLES])
    assert intervals["feature_norm"] == {"ci": [pytest.approx(low), pytest.approx(high)], "n": CYCLES, "reason": None}
    assert intervals["grad_norm"] == {"ci": None, "n": 2, "reason": "2 points; an interval needs at least 5"}
    assert intervals["param_norm"] == {"ci": None, "n": CYCLES, "reason": "constant values"}
    section = markdown.split("## Diagnostics as predictors")[1].split("\n## ")[0]
    assert "fewer than 5 cycles" in section
    assert f"| {9.5 / math.sqrt(95):+.2f} [{low:+.2f}, {high:+.2f}] (n = 5) |" in section
    assert "| – (n = 2) |" in section


def test_mean_correlation_is_over_the_runs_where_it_is_defined_with_the_interval_of_the_mean(report):
    _, markdown, _, summary = report
    means = summary["diagnostics_auc_spearman_mean"]
    # baseline and shrink, 5 cycles each, both rho = 1: the upper bound 1, the lower one from the mean z at
    # rho = 0.95 (half a rank step in) with SE sqrt(0.75 + 0.75) / 2
    low = math.tanh(math.atanh(0.95) - 1.959964 * math.sqrt(1.5) / 2)
    assert means["dormant_ratio"] == {"rho": pytest.approx(1.0), "runs": 2, "n": 10,
                                      "ci": [pytest.approx(low, abs=1e-6), 1.0]}
    assert means["update_ratio"] == {"rho": None, "runs": 0, "n": 0, "ci": None}
    assert f"| +1.00 [{low:+.2f}, +1.00] (2 runs, n = 10) |" in markdown


def test_a_diverged_probe_ranks_above_every_finite_auc_change():
    metrics = [{"event": "diagnostics", "task_index": 2 * cycle - 1, "task_end": True, "dormant_ratio": 0.1 * cycle}
               for cycle in range(1, 6)]
    probes = [{"cycle": cycle, "tasks_trained": 2 * cycle, "diverged": cycle == 3,
               "auc_pct_change": None if cycle == 3 else [0.0, 1.0, None, 2.0, 3.0][cycle - 1]} for cycle in range(1, 6)]
    correlation = auc_spearman(metrics, probes)["dormant_ratio"]
    # changes 0, 1, +inf, 2, 3 rank 1, 2, 5, 3, 4 against the rising dormant ratio: 1 - 6 * (0 + 0 + 4 + 1 + 1) / 120
    assert (correlation.rho, correlation.n) == (pytest.approx(0.7), 5)


def test_summary_lists_each_runs_mitigations_with_hyperparameters(report):
    _, markdown, runs, _ = report
    assert runs["baseline"]["mitigations"] == [] and runs["old"]["mitigations"] == []
    assert runs["shrink"]["mitigations"] == SHRINK_AND_REWARM
    assert runs["redo"]["mitigations"] == ["redo(every_steps=1000, threshold=0.05)"]
    assert runs["other-seed"]["mitigations"] == ["cbp(replacement_rate=0.0001, maturity=100, decay=0.99)"]
    assert f"| shrink | {', '.join(SHRINK_AND_REWARM)} |" in markdown
    assert "| baseline | none |" in markdown


def test_runs_differing_only_in_mitigations_are_compared(report):
    _, markdown, runs, summary = report
    assert summary["mitigation_groups"] == [["baseline", "shrink", "redo"]]
    comparison = markdown.split("### Runs that differ only in their mitigations: baseline, shrink, redo")[1]
    comparison = comparison.split("\n#")[0]
    assert "cycle 5 AUC (%)" in comparison and "other-seed" not in comparison
    redo_changes = " | ".join(
        f"{probe['auc']:.4f} ({probe['auc_pct_change']:+.2f}{' (within noise)' if probe['auc_pct_change_within_noise'] else ''})"
        for probe in runs["redo"]["probes"][1:])
    onset = OnsetObservation.from_json(runs["redo"]["onset_observation"])
    low, high = onset.bounds("tasks")
    assert low < 2 * len(TASKS) <= high  # the default probe AUCs of a 100K run are lowest after cycle 2
    assert f"| redo | redo(every_steps=1000, threshold=0.05) | {redo_changes} | {onset.describe('tasks')} | 4.0000 |" in comparison
    assert markdown.count("### Runs that differ only in their mitigations") == 1


def test_no_comparison_for_runs_that_differ_in_more_or_not_in_mitigations(tmp_path):
    runs = [make_run(tmp_path, "100K", 4, name="plain"),
            make_run(tmp_path, "100K", 4, name="plain-again"),  # same mitigations (none)
            make_run(tmp_path, "100K", 4, name="shrink-other-lr",
                     overrides=["mitigations.shrink_perturb.enabled=true", "optimizer.lr=1e-3"])]
    markdown, summary = report_on(runs, tmp_path / "report")
    assert summary["mitigation_groups"] == []
    assert "differ only in their mitigations" not in markdown


def test_diagnostics_figure_is_a_png_for_runs_that_logged_diagnostics(report):
    out, markdown, _, _ = report
    for name in ("baseline", "shrink"):
        path = out / f"diagnostics_{name}.png"
        assert f"({path.name})" in markdown
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 1000
    assert not (out / "diagnostics_redo.png").exists() and not (out / "diagnostics_old.png").exists()


def test_early_warnings_are_listed(report, tmp_path):
    _, markdown, runs, _ = report
    warnings = markdown.split("## Early warnings")[1].split("\n## ")[0]
    assert WARNING["message"] in warnings and "| baseline | probe_auc | zh | 3 | 24 | 6,000 |" in warnings
    assert runs["baseline"]["warnings"] == [WARNING] and runs["shrink"]["warnings"] == []
    quiet_markdown, _ = report_on([make_run(tmp_path, "100K", 2)], tmp_path / "report")
    assert quiet_markdown.split("## Early warnings")[1].split("\n## ")[0].strip().endswith("none")


def test_a_run_from_before_diagnostics_still_reports(report):
    _, _, runs, _ = report
    old = runs["old"]
    assert [probe["cycle"] for probe in old["probes"]] == list(range(7)) and old["onset"] == 2 * len(TASKS)
    assert old["diagnostics_auc_spearman"] == {name: None for name in DIAGNOSTICS}
    assert old["warnings"] == [] and old["training"]["tasks_completed"] == 6 * len(TASKS)
