"""The report's mitigation comparison of a sweep of one setting (a row per value) and its ranking of treatments
over seeds, on hand-built run directories through the CLI; and the control studies that make such runs."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats

from fabricated_runs import STEPS_PER_TASK, TASKS, falling_loss, make_run
from plasticity_dist.control import load_study
from plasticity_dist.study.config_files import load_config
from plasticity_dist.study.errors import ConfigError
from plasticity_dist.train.wandb_sink import default_group
from test_report_diagnostics import report_on

CYCLES = 4
SEEDS = (0, 1, 2)
# treatment: (overrides, AUC rise per cycle, training loss added): the default weight decay is 0.1, the default
# schedule constant after 100 warmup steps
REWARMING = "rewarming(warmup_steps=20, min_lr_ratio=0.1)"
TREATMENTS = {
    "none": ([], 0.10, 0.0),
    "l2": (["mitigations.l2_init.enabled=true"], 0.01, 0.2),
    "rewarm": (["optimizer.schedule=rewarm_cosine", "optimizer.warmup_steps=20"], 0.08, 0.05),
    "wd-0.01": (["optimizer.weight_decay=0.01", "sweep=optimizer.weight_decay"], 0.12, -0.1),
    "wd-1": (["optimizer.weight_decay=1.0", "sweep=optimizer.weight_decay"], 0.05, 0.1),
}
LAST_CYCLE_STEPS = range((CYCLES - 1) * len(TASKS) * STEPS_PER_TASK + 1, CYCLES * len(TASKS) * STEPS_PER_TASK + 1)


def auc(rise: float, seed: int, cycle: int) -> float:
    return 3.0 + (rise + 0.01 * seed) * cycle


def last_cycle_loss(added: float, seed: int) -> float:
    return statistics.fmean(falling_loss(step) + added + 0.03 * seed for step in LAST_CYCLE_STEPS)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    seeds = lambda seed: [f"seed={seed}", f"curriculum.control.permutation_seed={seed}"]  # as a control study's seed
    runs = [make_run(root, "100K", CYCLES, name=f"{name}-seed{seed}", overrides=[*overrides, *seeds(seed)],
                     aucs=lambda cycle, rise=rise, seed=seed: auc(rise, seed, cycle),
                     step_loss=lambda step, added=added, seed=seed: falling_loss(step) + added + 0.03 * seed)
            for name, (overrides, rise, added) in TREATMENTS.items() for seed in SEEDS]
    runs.append(make_run(root, "100K", CYCLES, name="other-lr", overrides=["optimizer.lr=1e-2"]))
    return report_on(runs, root / "report")


def test_a_sweep_compares_as_one_row_per_value_beside_the_mitigations(report):
    markdown, summary = report
    assert summary["swept_settings"] == ["optimizer.weight_decay"]
    assert summary["mitigation_groups"] == [[f"{name}-seed{seed}" for name in TREATMENTS] for seed in SEEDS]
    heading = "### Runs that differ only in their mitigations and optimizer.weight_decay: "
    comparison = markdown.split(heading + ", ".join(f"{name}-seed0" for name in TREATMENTS))[1].split("\n### ")[0]
    assert "| run | mitigations | optimizer.weight_decay | cycle 1 AUC (%) |" in comparison
    labels = {"l2": "l2_init(weight=0.0001)", "rewarm": REWARMING}
    for name, value in (("none", "0.1"), ("l2", "0.1"), ("rewarm", "0.1"), ("wd-0.01", "0.01"), ("wd-1", "1")):
        assert f"| {name}-seed0 | {labels.get(name, 'none')} | {value} | " in comparison
    assert "other-lr" not in comparison


def test_the_ranking_pools_seeds_per_treatment_and_orders_by_the_last_auc_change(report):
    markdown, summary = report
    (ranking,) = summary["mitigation_rankings"]
    assert ranking["tasks_trained"] == CYCLES * len(TASKS) and "other-lr" not in ranking["runs"]
    assert ranking["reference"] == [f"none-seed{seed}" for seed in SEEDS]
    rows = ranking["treatments"]
    assert [row["runs"][0] for row in rows] == ["l2-seed0", "wd-1-seed0", "rewarm-seed0", "none-seed0", "wd-0.01-seed0"]
    for row in rows:
        overrides, rise, added = TREATMENTS[row["runs"][0].rsplit("-", 1)[0]]
        changes = [100 * (auc(rise, seed, CYCLES) / auc(rise, seed, 1) - 1) for seed in SEEDS]
        assert row["n"] == 3 and row["auc_pct_change"]["n"] == 3
        assert row["auc_pct_change"]["mean"] == pytest.approx(statistics.fmean(changes))
        assert row["auc_pct_change"]["se"] == pytest.approx(stats.sem(changes))
        fresh = [100 * (auc(rise, seed, CYCLES) / 3.5 - 1) for seed in SEEDS]  # the fabricated baseline AUC is 3.5
        assert row["auc_vs_fresh_pct"]["mean"] == pytest.approx(statistics.fmean(fresh))
        losses = [last_cycle_loss(added, seed) for seed in SEEDS]
        assert row["last_cycle_loss"]["mean"] == pytest.approx(statistics.fmean(losses))
        costs = [100 * (last_cycle_loss(added, seed) / last_cycle_loss(0.0, seed) - 1) for seed in SEEDS]  # paired
        assert row["loss_cost_pct"]["mean"] == pytest.approx(statistics.fmean(costs))
        assert row["loss_cost_pct"]["se"] == pytest.approx(stats.sem(costs)) and row["loss_cost_pct"]["n"] == 3
        assert row["onset_interval_n"] + row["onset_left_censored"] + row["onset_right_censored"] + \
            row["onset_undetermined"] == 3
    table = markdown.split("### Ranking over seeds")[1].split("\n## ")[0]
    first = rows[0]
    assert (f"| 1 | l2_init(weight=0.0001) | 0.1 | 3 | {first['auc_pct_change']['mean']:+.2f} ± "
            f"{first['auc_pct_change']['se']:.2f} | ") in table
    assert f"| 3 | {REWARMING} | 0.1 | 3 |" in table and "| 4 | none | 0.1 | 3 |" in table
    assert table.count("| reference |") == 1


def test_a_schedule_setting_the_mitigation_labels_do_not_state_is_shown(tmp_path):
    runs = [make_run(tmp_path, "100K", 3, name=f"warmup-{steps}", overrides=[f"optimizer.warmup_steps={steps}"])
            for steps in (100, 0)]
    markdown, summary = report_on(runs, tmp_path / "report")
    assert summary["mitigation_groups"] == [["warmup-100", "warmup-0"]]
    assert "| run | mitigations | optimizer.warmup_steps | cycle 1 AUC (%) |" in markdown
    assert "| warmup-0 | none | 0 | " in markdown


def test_no_ranking_without_a_second_treatment_or_without_seeds_to_pool(tmp_path):
    plain = [make_run(tmp_path, "100K", 3, name=f"plain-seed{seed}", overrides=[f"seed={seed}"]) for seed in (0, 1)]
    markdown, summary = report_on(plain, tmp_path / "plain")
    assert summary["mitigation_rankings"] == [] and summary["swept_settings"] == []
    assert "### Ranking over seeds" not in markdown
    single = [plain[0], make_run(tmp_path, "100K", 3, name="l2-seed1", overrides=["seed=1", *TREATMENTS["l2"][0]])]
    markdown, summary = report_on(single, tmp_path / "single")
    assert summary["mitigation_rankings"] == [] and "### Ranking over seeds" not in markdown


def test_each_value_of_a_sweep_is_a_wandb_group_of_its_own():
    groups = {default_group(load_config(None, overrides)) for overrides, _, _ in TREATMENTS.values()}
    assert groups == {"100K-continual", "100K-continual-l2_init(weight=0.0001)", f"100K-continual-{REWARMING}",
                      "100K-continual-optimizer.weight_decay=0.01", "100K-continual-optimizer.weight_decay=1.0"}


def test_the_ranking_study_runs_every_treatment_and_each_swept_value_under_three_seeds():
    study = load_study("ranking")
    names = [name for name, _ in study.runs]
    assert len(names) == len(set(names)) == 13 * 3
    assert {"12.4K-seed2", "12.4K-hare-tortoise-seed0", "12.4K-weight_decay-0.01-seed1"} <= set(names)
    overrides = dict(study.runs)["12.4K-weight_decay-1-seed2"]
    config = load_config(None, overrides)
    assert (config.optimizer.weight_decay, config.sweep, config.seed, config.curriculum.cycles) == (1.0, "optimizer.weight_decay", 2, 4)
    scaling = [name for name, _ in load_study("scaling").runs]  # `make control`: its run folders as before
    assert scaling == [f"{size}-seed{seed}" for size in ("12.4K", "28K", "50K") for seed in (0, 1)] + \
        ["12.4K-l2-init-seed0", "12.4K-l2-init-seed1"]
    onset = dict(load_study("onset").runs)  # a group's overrides come after the study's: 50K at its own LR
    assert [load_config(None, onset[name]).optimizer.lr for name in ("12.4K-seed0", "50K-seed1")] == [1e-3, 5e-4]
    sizes = {name: load_config(None, overrides) for name, overrides in load_study("sizes").runs}
    assert [(config.curriculum.cycles, config.curriculum.control.probe_permutations)
            for config in (sizes["12.4K-seed1"], sizes["50K-seed0"])] == [(20, 4), (32, 4)]


def test_a_study_with_a_bad_setting_fails_before_training_naming_it(tmp_path):
    plans = tmp_path / "studies.yaml"
    plans.write_text("bad:\n  out: runs/bad\n  groups:\n    - sizes: [12.4K]\n      seeds: [0]\n"
                     "      sweep: {key: optimizer.weight_decai, values: [0.1]}\n")
    with pytest.raises(ConfigError, match="optimizer.weight_decai"):
        load_study("bad", plans)
    with pytest.raises(ValueError, match="--study nope: not a study of .*; its studies: bad"):
        load_study("nope", plans)
