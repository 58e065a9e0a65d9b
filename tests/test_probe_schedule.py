"""Probes after every task of the first cycles (`probe.every_task_cycles`), so that an onset predicted before the
second cycle end can be placed, and the reference probe every % change is against: the one at the end of cycle 1,
never a stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabricated_runs import make_run
from plasticity_dist.analysis.runs import load_run
from plasticity_dist.analysis.summary import build_summary
from plasticity_dist.engine.checkpoint_files import read_trainer_state
from plasticity_dist.probe.results import read_probes, reference_probe
from plasticity_dist.report.tables import reference_line
from plasticity_dist.study.config_files import load_config
from plasticity_dist.study.curriculum import build_tasks
from plasticity_dist.study.errors import ConfigError


def test_every_task_of_the_first_two_cycles_is_probed_then_every_cycle_end():
    config = load_config(None, ["curriculum.cycles=4", "probe.every_task_cycles=2"])  # 8 languages a cycle
    tasks = build_tasks(config)
    probed = [task for task in tasks if task.probe_after]
    assert [task.index + 1 for task in probed] == [*range(1, 17), 24, 32]  # tasks trained at each probe
    assert [task.cycle for task in probed] == [1] * 8 + [2] * 8 + [3, 4]
    assert len({task.checkpoint_tag(step=100 * task.index) for task in probed}) == len(probed)
    assert [task.index + 1 for task in build_tasks(load_config(None, ["curriculum.cycles=4"])) if task.probe_after] \
        == [8, 16, 24, 32]  # 0: cycle ends only, as before


def test_per_task_probes_are_refused_on_a_stationary_run_in_one_line():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["curriculum.problem=stationary", "probe.every_task_cycles=1"])
    assert str(error.value).startswith("probe.every_task_cycles=1 ") and "\n" not in str(error.value)


def test_a_run_requests_a_probe_after_every_task_of_its_first_cycle(data_root, tmp_path):
    """sbatch is missing or refuses the option, so every request stays queued: what the trainer asked for."""
    from runs import tiny_overrides, train_to_end

    run_dir = tmp_path / "run"
    overrides = tiny_overrides(data_root, launch__zero_stage=1, curriculum__cycles=2, curriculum__task_tokens=2048,
                               checkpoint__keep_last=1, diagnostics__enabled="false", forgetting__enabled="false",
                               probe__enabled="true", probe__every_task_cycles=1, probe__baseline="false",
                               probe__executor="slurm", probe__retries=0,
                               probe__slurm__extra_args="[--no-such-sbatch-option]")
    train_to_end(run_dir, overrides, processes=1)
    requested = sorted(path.stem for path in (run_dir / "probes" / "pending").glob("*.json"))
    assert requested == ["step000000008-task0000-cycle001-en", "step000000016-task0001-cycle001-zh",
                         "step000000032-task0003-cycle002-zh"]  # not task 3 (cycle 2, mid-cycle)
    states = [read_trainer_state(run_dir / "checkpoints" / tag) for tag in requested]
    assert [(state["probe_cycle"], state["task_index"]) for state in states] == [(1, 1), (1, 2), (2, 4)]


def add_probe(run_dir: Path, cycle: int, tasks_trained: int, auc: float) -> None:
    """A probe result after task `tasks_trained` (in cycle `cycle`) of a fabricated run (2 tasks a cycle)."""
    tag = f"task{tasks_trained:03d}"
    (run_dir / "probes" / f"{tag}.json").write_text(json.dumps({
        "checkpoint": tag, "cycle": cycle, "tasks_trained": tasks_trained, "tokens": tasks_trained * 1000,
        "eval_tokens": [0, 100, 300], "val_losses": [auc + 0.5, auc, auc - 0.25], "auc": auc, "config_hash": "abc"}))


def test_the_reference_is_the_cycle_1_end_probe_even_after_earlier_per_task_probes(tmp_path):
    run_dir = make_run(tmp_path, "100K", cycles=4)
    add_probe(run_dir, cycle=1, tasks_trained=1, auc=3.3)
    add_probe(run_dir, cycle=2, tasks_trained=3, auc=3.02)
    reference = reference_probe(read_probes(run_dir), reference_tasks=2)
    assert (reference.checkpoint, reference.cycle, reference.tasks_trained) == ("cycle001", 1, 2)

    [run] = build_summary([load_run(run_dir)])["runs"]
    assert run["reference_probe"] == {"checkpoint": "cycle001", "cycle": 1, "tasks_trained": 2}
    assert run["reference_reason"] is None
    changes = {probe["checkpoint"]: probe["auc_pct_change"] for probe in run["probes"]}
    reference_auc = 3.0 + 0.05 * (1 - 2) ** 2  # fabricated_runs.probe_auc of 100K at cycle 1
    assert changes["cycle001"] == 0.0
    assert changes["task001"] == pytest.approx(100 * (3.3 - reference_auc) / reference_auc)


def test_a_missing_cycle_1_end_probe_leaves_no_reference_and_says_why(tmp_path):
    run_dir = make_run(tmp_path, "100K", cycles=4)
    add_probe(run_dir, cycle=1, tasks_trained=1, auc=3.3)
    (run_dir / "probes" / "cycle001.json").unlink()
    assert reference_probe(read_probes(run_dir), reference_tasks=2) is None

    summary = build_summary([load_run(run_dir)])
    [run] = summary["runs"]
    reason = "no probe at the end of cycle 1 (tasks_trained 2): % changes not computed"
    assert run["reference_probe"] is None and run["reference_reason"] == reason
    assert all(probe["auc_pct_change"] is None for probe in run["probes"])  # cycle 2 does not stand in
    assert reference_line(summary) == f"Reference probes: continual-100K: {reason}."


def test_replicates_group_probes_by_tasks_trained_with_mid_cycle_probes(tmp_path):
    seeds = [make_run(tmp_path, "100K", cycles=3, name=f"seed{seed}", overrides=[f"seed={seed}"]) for seed in (0, 1)]
    for run_dir in seeds:
        add_probe(run_dir, cycle=1, tasks_trained=1, auc=3.3)
    add_probe(seeds[0], cycle=2, tasks_trained=3, auc=3.1)  # one seed only

    summary = build_summary([load_run(run_dir) for run_dir in seeds])
    [group] = summary["replicate_groups"]
    points = [(point["tasks_trained"], point["cycle"], point["n"]) for point in group["cycles"]]
    assert points == [(0, 0, 2), (1, 1, 2), (2, 1, 2), (3, 2, 1), (4, 2, 2), (6, 3, 2)]
    assert reference_line(summary) == ("Reference probes: seed0: `cycle001` (cycle 1, 2 tasks); "
                                       "seed1: `cycle001` (cycle 1, 2 tasks).")
