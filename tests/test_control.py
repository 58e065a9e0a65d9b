"""The control problem's mechanics: seeded token permutations, distinct per task and unseen by the probe, applied
by the loader and by validation; exact resume mid-task and across world sizes. Not its scientific result."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fabricated_runs import BASELINE_AUC, make_run
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.data.loader import ShardLoader, iter_eval_batches
from plasticity_dist.data.permutation import token_permutation
from plasticity_dist.report.markdown import write_report
from plasticity_dist.study.config_files import load_config
from plasticity_dist.study.curriculum import build_tasks, probe_permutation, reference_tasks, tasks_per_cycle
from plasticity_dist.study.errors import ConfigError
from plasticity_dist.train.probe_run import probe_config_hash, probe_run_config
from runs import (TINY_PROBE, assert_same_weights, copy_for_probing, final_weights, kill_process_group,
                  latest_checkpoint, probe_result, start_training, step_records, tiny_overrides, train_to_end, wait_for)
from test_probe import probe
from test_shards import SEQ_LEN, numbered_rows, write_dataset

VOCAB = 257  # the byte tokenizer's
ROWS = 96
GLOBAL_BATCH = 12
CONTROL = ["curriculum.problem=control", "curriculum.tasks=[{name: en}]", "curriculum.cycles=4",
           "curriculum.control.tasks_per_cycle=3", "curriculum.task_tokens=4096", "data.root=/data"]


def control_config(*overrides: str):
    return load_config(None, [*CONTROL, *overrides])


def test_each_task_has_its_own_seeded_permutation_and_the_probe_one_no_task_has() -> None:
    tasks = build_tasks(control_config())
    assert len(tasks) == 12 and [task.cycle for task in tasks] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert [task.index for task in tasks if task.probe_after] == [2, 5, 8, 11]
    assert {task.datasets for task in tasks} == {("/data/en",)}
    tables = [token_permutation(task.permutation, VOCAB) for task in tasks]
    assert all(sorted(table) == list(range(VOCAB)) for table in tables)
    assert len({table.tobytes() for table in tables}) == len(tables), "every task permutes differently"
    probe_table = token_permutation(probe_permutation(control_config()), VOCAB)
    assert all(not np.array_equal(probe_table, table) for table in tables), "the probe's map is no task's"
    # seeded: the same config gives the same maps, another permutation seed other maps for every task
    assert [task.permutation for task in build_tasks(control_config())] == [task.permutation for task in tasks]
    other = build_tasks(control_config("curriculum.control.permutation_seed=1"))
    assert not {task.permutation for task in other} & {task.permutation for task in tasks}
    assert probe_permutation(control_config("curriculum.control.permutation_seed=1")) != probe_permutation(control_config())
    assert tasks_per_cycle(control_config()) == reference_tasks(control_config()) == 3


def test_the_probe_run_trains_and_validates_under_the_probe_permutation(tmp_path: Path) -> None:
    config = control_config()
    probe_run = probe_run_config(config, tmp_path / "checkpoint", tmp_path / "probe")
    (probe_task,) = build_tasks(probe_run)
    assert probe_task.permutation == probe_permutation(config)
    assert probe_task.permutation not in {task.permutation for task in build_tasks(config)}
    assert probe_permutation(load_config(None, ["data.root=/data"])) is None  # other problems: no permutation
    assert build_tasks(probe_run_config(load_config(None, ["data.root=/data"]), tmp_path, tmp_path))[0].permutation is None
    seeds = [control_config(f"curriculum.control.permutation_seed={seed}") for seed in (0, 1)]
    assert probe_config_hash(seeds[0]) != probe_config_hash(seeds[1])  # probes of different maps never compare


@pytest.mark.parametrize("overrides, named", [
    (["curriculum.tasks=[{name: en}, {name: zh}]"], "curriculum.problem=control permutes one dataset"),
    (["curriculum.tasks=[{name: en, permutation: 3}]"], "curriculum.tasks[0].permutation=3"),
    (["curriculum.control.tasks_per_cycle=0"], "'curriculum.control.tasks_per_cycle': 0 is below the minimum 1"),
    (["mitigations.replay.enabled=true"], "mitigations.replay"),
])
def test_bad_control_settings_are_named(overrides: list[str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        control_config(*overrides)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("control") / "data"
    rows = numbered_rows(ROWS)
    rows[:, 1:] = np.arange(VOCAB - SEQ_LEN, VOCAB)  # the vocabulary's last ids, end-of-text among them
    write_dataset(path, rows, rows_per_block=9, rows_per_shard=45, vocab_size=VOCAB)
    write_dataset(path / "val", numbered_rows(24), rows_per_block=9, rows_per_shard=45, vocab_size=VOCAB)
    return path


def loader(dataset: Path, permutation: int | None, **overrides) -> ShardLoader:
    arguments = dict(seq_len=SEQ_LEN, micro_batch_size=2, global_batch_size=GLOBAL_BATCH, token_budget=3 * ROWS * SEQ_LEN,
                     rank=0, world_size=1, seed=3, task=5, num_workers=0, permutation=permutation)
    return ShardLoader([dataset], **{**arguments, **overrides})


def test_the_loader_and_validation_map_every_id_through_the_task_permutation(dataset: Path) -> None:
    table = torch.tensor(token_permutation(77, VOCAB))
    plain, permuted = list(loader(dataset, None)), list(loader(dataset, 77))
    assert len(plain) == len(permuted)
    for (inputs, targets), (permuted_inputs, permuted_targets) in zip(plain, permuted):
        assert torch.equal(permuted_inputs, table[inputs]) and torch.equal(permuted_targets, table[targets])
    val = [list(iter_eval_batches(dataset / "val", seq_len=SEQ_LEN, batch_size=8, max_tokens=10**6, permutation=seed))
           for seed in (None, 77)]
    assert all(torch.equal(b[0], table[a[0]]) and torch.equal(b[1], table[a[1]]) for a, b in zip(*val))


def global_steps(dataset: Path, world_size: int, state: dict | None = None) -> list[torch.Tensor]:
    """Each step's global batch of permuted inputs, gathered over the ranks in rank-then-micro-batch order."""
    per_rank = []
    for rank in range(world_size):
        rank_loader = loader(dataset, 77, rank=rank, world_size=world_size)
        if state is not None:
            rank_loader.load_state_dict(state)
        per_rank.append([inputs for inputs, _ in rank_loader])
    accum = rank_loader.accum_steps
    return [torch.cat([per_rank[rank][step * accum + a] for a in range(accum) for rank in range(world_size)])
            for step in range(len(per_rank[0]) // accum)]


@pytest.mark.parametrize("new_world_size", [1, 2, 3])
def test_a_permuted_task_resumed_mid_task_on_another_world_size_continues_the_same_batches(
        dataset: Path, new_world_size: int) -> None:
    uninterrupted = global_steps(dataset, 1)
    stop = ROWS // GLOBAL_BATCH + 3  # mid-task, in the second epoch of the chunk
    stopped = loader(dataset, 77, world_size=2, rank=1)
    for _ in itertools.islice(iter(stopped), stop * stopped.accum_steps):
        pass
    state = stopped.state_dict()
    assert state["permutation"] == 77 and state["step"] == stop
    resumed = global_steps(dataset, new_world_size, state)
    assert len(resumed) == len(uninterrupted) - stop
    assert all(torch.equal(a, b) for a, b in zip(resumed, uninterrupted[stop:]))
    with pytest.raises(ValueError, match="token permutation 77, this loader has 78"):
        loader(dataset, 78).load_state_dict(state)


def test_each_probe_is_compared_with_the_same_probe_from_fresh_weights(tmp_path: Path) -> None:
    run = make_run(tmp_path, "100K", cycles=2, aucs=lambda cycle: 3.0 + 0.1 * cycle)
    summary = write_report([run], tmp_path / "report")
    probes = summary["runs"][0]["probes"]
    assert [probe["cycle"] for probe in probes] == [0, 1, 2]
    assert [probe["auc_vs_fresh_pct"] for probe in probes] == pytest.approx(
        [0.0, 100 * (3.1 - BASELINE_AUC) / BASELINE_AUC, 100 * (3.2 - BASELINE_AUC) / BASELINE_AUC])
    assert "% vs fresh init" in (tmp_path / "report" / "report.md").read_text()


def control_run_overrides(data_root: Path) -> list[str]:
    """2 cycles of 2 permuted tasks of 16 steps, a checkpoint every 4 steps, without ZeRO (stage 0), as the
    control study runs."""
    return tiny_overrides(data_root, curriculum__problem="control", curriculum__tasks="[{name: en}]",
                          curriculum__task_tokens=16 * 8 * 32, curriculum__cycles=2,
                          curriculum__control__tasks_per_cycle=2, curriculum__control__permutation_seed=5,
                          checkpoint__every_steps=4, launch__zero_stage=0, data__num_workers=0)


def test_a_control_run_killed_mid_task_resumes_to_the_uninterrupted_losses_and_weights(data_root, tmp_path) -> None:
    overrides = control_run_overrides(data_root)
    uninterrupted = train_to_end(tmp_path / "uninterrupted", overrides, processes=1)
    run_dir = tmp_path / "run"
    first = start_training(run_dir, overrides, processes=1)
    wait_for(lambda: len(step_records(run_dir)) >= 22, what="step 22")  # mid-task 2, past the step-20 checkpoint
    kill_process_group(first)
    assert int(latest_checkpoint(run_dir).name[4:13]) % 16, "the run stopped inside a task"
    train_to_end(run_dir, overrides, processes=1)
    losses = {record["step"]: record["loss"] for record in step_records(run_dir)}
    assert sorted(losses) == list(range(1, 65))
    assert losses == {record["step"]: record["loss"] for record in step_records(uninterrupted)}
    assert_same_weights(final_weights(run_dir), final_weights(uninterrupted))


def test_a_control_run_killed_on_2_ranks_resumes_on_1_with_the_whole_state(data_root, tmp_path):
    """Without ZeRO rank 0 saves the whole engine, so the checkpoint resumes on another world size. Weights, Adam's
    moments and the batches come back whole: the resumed task's losses are the uninterrupted 2-rank run's to float
    rounding (the gradient is averaged in another order). Later tasks drift apart slowly: Adam turns rounding
    differences in near-zero gradients into whole steps."""
    overrides = control_run_overrides(data_root)
    uninterrupted = train_to_end(tmp_path / "uninterrupted", overrides)
    run_dir = tmp_path / "run"
    first = start_training(run_dir, overrides)
    wait_for(lambda: len(step_records(run_dir)) >= 22, what="step 22")
    kill_process_group(first)
    resumed_at = int(latest_checkpoint(run_dir).name[4:13])
    train_to_end(run_dir, overrides, processes=1)
    losses = {record["step"]: record["loss"] for record in step_records(run_dir)}
    expected = {record["step"]: record["loss"] for record in step_records(uninterrupted)}
    assert sorted(losses) == list(range(1, 65)) and resumed_at % 16
    resumed_task = range(resumed_at + 1, (resumed_at // 16 + 1) * 16 + 1)
    assert [losses[step] for step in resumed_task] == pytest.approx([expected[step] for step in resumed_task], rel=1e-6)
    assert all(abs(losses[step] / expected[step] - 1) < 1e-2 for step in range(resumed_at + 1, 65))


def test_a_probe_over_two_permutations_holds_their_mean_the_first_being_the_single_permutation_probe(
        data_root, tmp_path) -> None:
    trained = train_to_end(tmp_path / "trained", control_run_overrides(data_root), processes=1)
    settings = [f"{key.replace('__', '.')}={value}" for key, value in TINY_PROBE.items()]
    single = copy_for_probing(trained, tmp_path / "one", settings)
    double = copy_for_probing(trained, tmp_path / "two", [*settings, "curriculum.control.probe_permutations=2"])
    for checkpoint in (single, double):
        finished = probe(checkpoint)
        assert finished.returncode == 0, finished.stderr[-3000:]
    one, two = probe_result(single), probe_result(double)
    assert two["permutation_aucs"][0] == one["auc"]  # the same probe, bitwise
    assert two["permutation_aucs"][1] != one["auc"]
    assert two["auc"] == pytest.approx(sum(two["permutation_aucs"]) / 2)
    assert two["eval_tokens"] == one["eval_tokens"]  # each permutation's curve counted from its own start
    assert two["config_hash"] != one["config_hash"] and "permutation_aucs" not in one
    probe_run = RunLayout.of_checkpoint(double).probe_run(double.name)
    assert [task.permutation for task in build_tasks(load_config(probe_run.config))] == [
        probe_permutation(load_config(RunLayout.of_checkpoint(double).config), index) for index in range(2)]
    assert not probe_run.checkpoints.exists()


def restarting_run(data_root: Path, first_permutation: int, restart: bool = True) -> list[str]:
    """Two tasks of 16 steps on en, under token permutations `first_permutation` and 2, evaluated at steps 0, 8
    and 16 of each, a checkpoint every 4 steps, on 1 rank without ZeRO."""
    return tiny_overrides(
        data_root, curriculum__tasks=f"[{{name: a, dataset: en, permutation: {first_permutation}}}, "
        "{name: b, dataset: en, permutation: 2}]", curriculum__task_tokens=16 * 8 * 32,
        curriculum__restart_each_task=str(restart).lower(), evaluation__points=3, checkpoint__every_steps=4,
        launch__zero_stage=0, data__num_workers=0)


def second_task_curve(run_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(record["step"], record["val_loss"]) for record in records
            if record["event"] == "eval" and record["task_index"] == 1]


def test_a_restarting_run_trains_each_task_from_the_initial_weights_with_a_fresh_optimizer(data_root, tmp_path):
    """Task b's curve is the same whatever task a trained on (weights and Adam's moments both start again); killed
    inside task b, the run resumes to the same curve."""
    curve = second_task_curve(train_to_end(tmp_path / "after-1", restarting_run(data_root, 1), processes=1))
    assert len(curve) == 3
    assert second_task_curve(train_to_end(tmp_path / "after-3", restarting_run(data_root, 3), processes=1)) == curve
    plain = train_to_end(tmp_path / "plain", restarting_run(data_root, 1, restart=False), processes=1)
    assert second_task_curve(plain)[0] != curve[0]  # without the restart task b starts from task a's end
    run_dir = tmp_path / "killed"
    first = start_training(run_dir, restarting_run(data_root, 1), processes=1)
    wait_for(lambda: len(step_records(run_dir)) >= 22, what="step 22")  # in task b, past its step-20 checkpoint
    kill_process_group(first)
    train_to_end(run_dir, restarting_run(data_root, 1), processes=1)
    assert second_task_curve(run_dir) == curve
