"""Uncertainty in the report: replicate groups (mean ± SE with n and a 95 % t-interval, group onsets), a single
run's probe noise σ with its family-wise "within noise" marks and the text that describes them, and stationary
onsets in tokens."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from matplotlib.collections import PolyCollection
from scipy import stats

from fabricated_runs import TASKS, TASK_TOKENS, make_run
from plasticity_dist.analysis.onset import estimate_onset
from plasticity_dist.cli import main
from plasticity_dist.probe.noise import describe_noise_rule, probe_noise
from plasticity_dist.report.figures import auc_change_figure, group_auc_change_figure


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


def test_runs_differing_only_in_seeds_form_a_group_with_mean_standard_error_and_interval_per_cycle(replicated):
    _, markdown, summary = replicated
    groups = {tuple(group["runs"]): group for group in summary["replicate_groups"]}
    assert set(groups) == {("seed1", "seed2", "seed3"), ("other-lr",), ("continual-600K",), ("continual-5M",)}
    group = groups[("seed1", "seed2", "seed3")]
    assert group["n"] == 3 and group["model"] == "100K" and group["onset_unit"] == "tasks"
    per_run = [pct_changes(u_shaped(best, scale), range(1, 7)) for best, scale in ((2, 1.0), (3, 1.01), (4, 0.99))]
    t = stats.t.ppf(0.975, 2)  # 4.30: the 95 % interval of a mean of 3 runs
    family_wise = stats.t.ppf(1 - 0.05 / (2 * 5), 2)  # 5 changes against cycle 1 judged together
    for cycle in group["cycles"][2:]:
        values = [changes[cycle["cycle"] - 1] for changes in per_run]
        mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(3)
        assert cycle["n"] == 3 and cycle["tasks_trained"] == cycle["cycle"] * len(TASKS)
        assert cycle["auc_pct_change_mean"] == pytest.approx(mean) and cycle["auc_pct_change_se"] == pytest.approx(se)
        assert cycle["auc_pct_change_ci95"] == pytest.approx([mean - t * se, mean + t * se])
        assert cycle["auc_pct_change_within_noise"] == (abs(mean) <= family_wise * se)
    single = groups[("other-lr",)]["cycles"][2]
    assert single["auc_pct_change_se"] is None and single["auc_pct_change_ci95"] is None  # one run: no interval
    assert "family-wise" in markdown and "± 12.71 SE for 2 runs" in markdown


def test_a_group_onset_is_the_mean_and_standard_error_of_its_pinned_runs(replicated):
    _, markdown, summary = replicated
    group = next(group for group in summary["replicate_groups"] if group["n"] == 3)
    runs = {run["run"]: run for run in summary["runs"]}
    estimates = {name: estimate_onset([2 * cycle for cycle in range(1, 7)], [u_shaped(best, scale)(cycle)
                                                                            for cycle in range(1, 7)])
                 for name, best, scale in (("seed1", 2, 1.0), ("seed2", 3, 1.01), ("seed3", 4, 0.99))}
    for name, estimate in estimates.items():
        assert runs[name]["onset"] == estimate.onset and runs[name]["onset_censoring"] == estimate.censoring
    pinned = [estimate.onset for estimate in estimates.values() if estimate.censoring == "interval"]
    assert group["onset_interval_n"] == len(pinned) >= 2 and group["onset_mean"] == pytest.approx(statistics.fmean(pinned))
    assert group["onset_se"] == pytest.approx(statistics.stdev(pinned) / math.sqrt(len(pinned)))
    kinds = [estimate.censoring for estimate in estimates.values()]
    assert (group["onset_right_censored"], group["onset_left_censored"], group["onset_undetermined"]) == (
        kinds.count("right"), kinds.count("left"), kinds.count("undetermined"))
    assert "### 100K: seed1, seed2, seed3" in markdown


def test_a_single_run_shows_its_probe_noise_and_marks_changes_family_wise(tmp_path):
    """Flat with ±0.1 % noise for 6 cycles, then a rise of 2 % per cycle."""
    wiggle = [0.003, -0.002, 0.001, -0.003, 0.002, 0.0]
    aucs = lambda cycle: 3.0 + (wiggle[cycle - 1] if cycle <= 6 else 0.06 * (cycle - 6))
    run = make_run(tmp_path, "100K", cycles=10, aucs=aucs)
    markdown, summary = report_on([run], tmp_path / "report")
    record = summary["runs"][0]
    tasks = [cycle * len(TASKS) for cycle in range(1, 11)]
    expected = probe_noise(tasks, [aucs(cycle) for cycle in range(1, 11)])
    noise = record["noise"]["auc"]
    assert noise["sigma"] == pytest.approx(expected.sigma) and noise["degrees_of_freedom"] == pytest.approx(
        expected.degrees_of_freedom)
    assert noise["sigma_pct_change"] == pytest.approx(100 * math.sqrt(2) * expected.sigma / aucs(1))
    assert noise["comparisons"] == 9
    assert noise["multiple"] == pytest.approx(stats.t.ppf(1 - 0.05 / 18, expected.degrees_of_freedom))
    flags = {probe["cycle"]: probe["auc_pct_change_within_noise"] for probe in record["probes"]}
    assert flags[0] is None and flags[1] is None  # the baseline and the reference itself are not judged
    changes = {probe["cycle"]: probe["auc_pct_change"] for probe in record["probes"]}
    assert all(flags[cycle] == (abs(changes[cycle]) <= noise["multiple"] * noise["sigma_pct_change"])
               for cycle in range(2, 11))
    assert [flags[cycle] for cycle in range(2, 7)] == [True] * 5  # the wiggle
    assert [flags[cycle] for cycle in range(8, 11)] == [False] * 3  # the rise from +4 %
    assert record["onset_censoring"] == "interval" and record["onset_interval"][0] < 12 <= record["onset_interval"][1]


def test_the_sigma_text_describes_the_code_that_computes_sigma(tmp_path):
    run = make_run(tmp_path, "100K", cycles=6)
    markdown, _ = report_on([run], tmp_path / "report")
    assert describe_noise_rule() in markdown
    assert "second differences" not in markdown and "pseudo-residuals" in describe_noise_rule()


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
    assert record["onset_unit"] == "tokens" and record["onset_observation"]["tasks"] is None
    low, high = record["onset_interval"]
    minimum = 3 * len(TASKS) * TASK_TOKENS  # the U's minimum, in tokens
    assert record["onset_observation"]["tokens"] == [low, high] and low < minimum <= high
    assert high - low > 2 * len(TASKS)  # tokens, not tasks
    assert f"({low:,.0f}, {high:,.0f}] tokens" in markdown
    group = summary["replicate_groups"][0]
    assert group["onset_unit"] == "tokens"
    assert summary["scaling_fit"] is None  # stationary runs are not fit


def test_plots_draw_95_percent_bands_only_where_there_is_a_standard_error_and_noise_bars_per_run(replicated):
    _, _, summary = replicated
    groups = summary["replicate_groups"]
    axes = group_auc_change_figure(groups, "continual").axes[0]
    bands = [collection for collection in axes.collections if isinstance(collection, PolyCollection)]
    assert len(bands) == 1  # the 3-seed group; a run alone has no standard error, so no band (not a zero-width one)
    assert "95 % t-interval" in axes.get_title()
    runs = [run for run in summary["runs"] if run["noise"]["auc"] is not None]
    run_axes = auc_change_figure(runs, "continual").axes[1]
    assert len(run_axes.containers) >= len(runs) and "± t·σ" in run_axes.get_title()
    assert all(float(tick).is_integer() for tick in run_axes.get_xticks())
