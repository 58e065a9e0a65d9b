"""Uncertainty in the report: replicate groups (mean ± SE with n, group onsets, one fit point per group), a
single run's probe noise σ with its "within noise" marks, and stationary onsets in tokens."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from fabricated_runs import TASKS, TASK_TOKENS, make_run, probe_auc
from plasticity_dist.analysis.onset import residual_noise
from plasticity_dist.analysis.scaling import fit_power_law
from plasticity_dist.cli import main


def u_shaped(best_cycle: int, scale: float = 1.0):
    return lambda cycle: scale * (3.0 + 0.05 * (cycle - best_cycle) ** 2)


def report_on(runs, out):
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    return (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())


def pct_changes(aucs, cycles):
    return [100 * (aucs(cycle) - aucs(1)) / aucs(1) for cycle in cycles]


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    """Three 100K seeds with onsets after cycles 2, 3 and 4 (4, 6, 8 tasks), one at another learning rate, and
    one run each at 600K and 5M."""
    root = tmp_path_factory.mktemp("runs")
    seeds = [make_run(root, "100K", cycles=6, name=f"seed{seed}", aucs=u_shaped(best, scale),
                      overrides=[f"seed={seed}", f"data.seed={seed}"])
             for seed, best, scale in ((1, 2, 1.0), (2, 3, 1.01), (3, 4, 0.99))]
    others = [make_run(root, "100K", cycles=6, name="other-lr", overrides=["optimizer.lr=5e-4"]),
              make_run(root, "600K", cycles=8), make_run(root, "5M", cycles=8, aucs=u_shaped(5))]
    out = root / "report"
    return out, *report_on([*seeds, *others], out)


def test_runs_differing_only_in_seeds_form_a_group_with_mean_and_standard_error_per_cycle(replicated):
    _, _, summary = replicated
    groups = {tuple(group["runs"]): group for group in summary["replicate_groups"]}
    assert set(groups) == {("seed1", "seed2", "seed3"), ("other-lr",), ("continual-600K",), ("continual-5M",)}
    group = groups[("seed1", "seed2", "seed3")]
    assert group["n"] == 3 and group["model"] == "100K" and group["onset_unit"] == "tasks"
    per_run = [pct_changes(u_shaped(best, scale), range(1, 7)) for best, scale in ((2, 1.0), (3, 1.01), (4, 0.99))]
    for cycle in group["cycles"][1:]:
        values = [changes[cycle["cycle"] - 1] for changes in per_run]
        assert cycle["n"] == 3 and cycle["tasks_trained"] == cycle["cycle"] * len(TASKS)
        assert cycle["auc_pct_change_mean"] == pytest.approx(statistics.fmean(values))
        assert cycle["auc_pct_change_se"] == pytest.approx(statistics.stdev(values) / math.sqrt(3))
        t = 4.302652729749464  # Student's t, two-sided 95 %, on 2 degrees of freedom (3 runs)
        assert cycle["auc_pct_change_within_noise"] == (abs(statistics.fmean(values))
                                                         <= t * statistics.stdev(values) / math.sqrt(3))
    assert groups[("other-lr",)]["cycles"][2]["auc_pct_change_se"] is None  # one run: no standard error


def test_a_group_onset_is_the_mean_and_standard_error_of_its_runs_and_one_fit_point(replicated):
    out, markdown, summary = replicated
    group = next(group for group in summary["replicate_groups"] if group["n"] == 3)
    assert group["onset_mean"] == pytest.approx(6) and group["onset_exact_n"] == 3
    assert group["onset_se"] == pytest.approx(2 / math.sqrt(3))
    assert group["onset_observation"]["tasks"] == pytest.approx((4 * 6 * 8) ** (1 / 3))
    assert "| seed1, seed2, seed3 | 100K | 3 | 6 ± 1.155 tasks | 3 | 0 | 0 | 5.769 |" in markdown
    assert "### 100K: seed1, seed2, seed3" in markdown
    assert (out / "auc_change_replicates_continual.png").is_file()
    # every group is one point: the 100K seeds at their geometric mean, the other 100K run, 600K and 5M
    fit = summary["scaling_fit"]
    sizes = [98_624, 98_624, 603_120, 4_979_808]
    expected = fit_power_law(sizes, [(4 * 6 * 8) ** (1 / 3), 4, 8, 10])
    assert (fit["n"], fit["runs"], fit["sizes"]) == (4, 6, 3) and fit["b"] == pytest.approx(expected.b)
    assert "least squares over exact onsets, n = 4 replicate groups (6 runs) at 3 sizes" in markdown


def test_a_single_run_shows_its_probe_noise_and_marks_changes_within_it(tmp_path):
    """Flat with ±0.1 % noise for 6 cycles, then a rise of 2 % per cycle."""
    wiggle = [0.003, -0.002, 0.001, -0.003, 0.002, 0.0]
    aucs = lambda cycle: 3.0 + (wiggle[cycle - 1] if cycle <= 6 else 0.06 * (cycle - 6))
    run = make_run(tmp_path, "100K", cycles=10, aucs=aucs)
    markdown, summary = report_on([run], tmp_path / "report")
    record = summary["runs"][0]
    tasks = [cycle * len(TASKS) for cycle in range(1, 11)]
    sigma, degrees_of_freedom = residual_noise(tasks, [aucs(cycle) for cycle in range(1, 11)])
    assert 0.001 < sigma < 0.004 and degrees_of_freedom == 7  # a hinge: 3 coefficients over 10 probes
    noise = record["noise"]["auc"]
    assert noise["sigma"] == pytest.approx(sigma)
    assert noise["sigma_pct_change"] == pytest.approx(100 * math.sqrt(2) * sigma / aucs(1))
    flags = {probe["cycle"]: probe["auc_pct_change_within_noise"] for probe in record["probes"]}
    assert flags[0] is None and flags[1] is None  # the baseline and the reference itself are not judged
    changes = {probe["cycle"]: probe["auc_pct_change"] for probe in record["probes"]}
    t = 2.364624251592784  # Student's t, two-sided 95 %, on 7 degrees of freedom
    assert all(flags[cycle] == (abs(changes[cycle]) <= t * noise["sigma_pct_change"]) for cycle in range(2, 11))
    # the wiggle's changes (-0.17, -0.07, -0.20, -0.03, -0.10 %) lie within tσ = 0.22 %, the rise's (+1.9 % on) not;
    # a 2σ rule (0.18 %) would call the wiggle's -0.20 % a change
    assert [flags[cycle] for cycle in range(2, 11)] == [True, True, True, True, True, False, False, False, False]
    assert 2 * noise["sigma_pct_change"] < abs(changes[4]) <= t * noise["sigma_pct_change"]
    change = record["probes"][2]["auc_pct_change"]
    assert f"| {change:+.2f} (within noise) | {noise['sigma_pct_change']:.2f} (7 df) |" in markdown
    assert record["onset"] == 6 * len(TASKS) and record["onset_interval"][0] <= 12 <= record["onset_interval"][1]


def test_a_noise_free_line_has_no_noise_and_no_change_within_it(tmp_path):
    run = make_run(tmp_path, "100K", cycles=6, aucs=lambda cycle: 3.0 + 0.03 * cycle)
    _, summary = report_on([run], tmp_path / "report")
    record = summary["runs"][0]
    assert record["noise"]["auc"]["sigma"] == pytest.approx(0, abs=1e-9)
    assert [probe["auc_pct_change_within_noise"] for probe in record["probes"][2:]] == [False] * 5


def test_stationary_onsets_are_in_tokens_never_in_tasks(tmp_path):
    run = make_run(tmp_path, "250K", cycles=8, problem="stationary", aucs=u_shaped(3))
    markdown, summary = report_on([run], tmp_path / "report")
    record = summary["runs"][0]
    onset_tokens = 3 * len(TASKS) * TASK_TOKENS
    assert (record["onset_unit"], record["onset"], record["onset_tokens"]) == ("tokens", onset_tokens, onset_tokens)
    assert record["onset_observation"] == {"tasks": None, "tokens": onset_tokens, "censoring": "exact"}
    low, high = record["onset_interval"]
    assert low < onset_tokens < high and high - low > 2 * len(TASKS)  # tokens, not tasks
    assert f"| stationary-250K | 250K | 249,480 | stationary | – | {onset_tokens:,} | [{low:,}, {high:,}] tokens |" in markdown
    group = summary["replicate_groups"][0]
    assert group["onset_unit"] == "tokens" and group["onset_mean"] == onset_tokens
    assert summary["scaling_fit"] is None and summary["censored_fit"] is None  # stationary runs are not fit
