"""The trainer on CPU: real DeepSpeed engines (ZeRO 1/2/3 and without ZeRO), gloo, 2 processes through accelerate launch."""

from __future__ import annotations

import json
import shutil
import signal
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from plasticity_dist.common.run_layout import PREEMPTED_MARKER
from plasticity_dist.common.run_lock import LOCK_FILE
from plasticity_dist.engine.preemption import REQUEUE_EXIT_CODE
from plasticity_dist.engine.slim import slim_checkpoint
from runs import (assert_same_weights, final_weights, kill_process_group, latest_checkpoint, reference_overrides,
                  signal_process_tree, start_training, step_records, tiny_overrides, train, train_to_end, wait_for)

# `data_root`, `zero3_reference` (the yardstick of the resume tests) and the ZeRO-1 runs on 1 and 2 ranks are
# shared fixtures: see conftest.py


def losses_by_step(run_dir):
    return {record["step"]: record["loss"] for record in step_records(run_dir)}


def test_zero1_trains_two_tasks_and_the_loss_falls(zero1_two_ranks):
    check_finished_run(zero1_two_ranks)


def test_zero2_trains_two_tasks_and_the_loss_falls(data_root, tmp_path):
    run_dir = tmp_path / "run"
    train_to_end(run_dir, tiny_overrides(data_root, launch__zero_stage=2))
    check_finished_run(run_dir)


def check_finished_run(run_dir):
    records = step_records(run_dir)
    assert [r["step"] for r in records] == list(range(1, 65))
    assert [r["task"] for r in records[:32]] == ["en"] * 32 and [r["task"] for r in records[32:]] == ["zh"] * 32
    assert records[31]["loss"] < records[0]["loss"] - 1.0
    task_ends = [record for record in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                 if record["event"] == "task_end"]
    assert [end["tokens"] for end in task_ends] == [8192, 16384]
    assert all(end["val_loss"] is not None for end in task_ends)
    # forgetting: every language and the probe language, evaluated by every rank on the same batches
    assert all(set(end["val_losses"]) == {"en", "zh"} and end["probe_val_loss"] is not None for end in task_ends)
    assert (run_dir / "config.yaml").is_file()
    assert latest_checkpoint(run_dir).name == "step000000064-task0001-cycle001-zh"


def test_zero3_trains_two_tasks_and_the_loss_falls(zero3_reference):
    check_finished_run(zero3_reference)


def test_resume_after_sigkill_matches_uninterrupted_run(data_root, zero3_reference, tmp_path):
    run_dir = tmp_path / "run"
    overrides = reference_overrides(data_root, checkpoint__every_steps=10)
    first = start_training(run_dir, overrides)
    wait_for(lambda: len(step_records(run_dir)) >= 45, what="step 45")  # mid-task 2, past the step-40 checkpoint
    kill_process_group(first)
    assert latest_checkpoint(run_dir).name.startswith("step000000040")
    assert (run_dir / LOCK_FILE).is_file()  # left behind by the killed trainer: its resume takes it over
    train_to_end(run_dir, overrides)
    assert not (run_dir / LOCK_FILE).exists()
    assert losses_by_step(run_dir) == losses_by_step(zero3_reference)
    assert task_end_records(run_dir) == task_end_records(zero3_reference)  # the forgetting evaluations too
    assert_same_weights(final_weights(run_dir), final_weights(zero3_reference))


def task_end_records(run_dir):
    return [{key: value for key, value in record.items() if key != "time"}
            for record in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if record["event"] == "task_end"]


def test_a_second_trainer_on_a_running_run_is_refused_and_changes_nothing(data_root, zero3_reference, tmp_path):
    run_dir = tmp_path / "run"
    overrides = reference_overrides(data_root)
    first = start_training(run_dir, overrides)
    wait_for(lambda: len(step_records(run_dir)) >= 1, what="the first step")
    signal_process_tree(first, signal.SIGSTOP)  # hold the first trainer mid-run while the second one starts
    try:
        holder = json.loads((run_dir / LOCK_FILE).read_text())
        started = time.monotonic()
        second = train(run_dir, overrides, processes=1)
        refused_after_s = time.monotonic() - started
    finally:
        signal_process_tree(first, signal.SIGCONT)
    assert second.returncode != 0 and refused_after_s < 60
    refusal = second.stderr.splitlines()[-1]  # after the rank's log lines (its CPUs)
    assert refusal.startswith(f"plasticity-dist train: error: run directory {run_dir} is in use by host "
                              f"{holder['host']}, pid {holder['pid']} (lock file {run_dir / LOCK_FILE}")
    assert first.wait(timeout=300) == 0
    assert (run_dir / "metrics.jsonl").read_text().count('"event": "step"') == 64
    assert losses_by_step(run_dir) == losses_by_step(zero3_reference)
    assert checkpoint_names(run_dir) == checkpoint_names(zero3_reference)
    assert_same_weights(final_weights(run_dir), final_weights(zero3_reference))
    assert not (run_dir / LOCK_FILE).exists()


def checkpoint_names(run_dir):
    return sorted(path.name for path in (run_dir / "checkpoints").iterdir())


def test_kill_during_checkpoint_write_keeps_latest_complete_and_resumes(data_root, zero3_reference, tmp_path):
    run_dir = tmp_path / "run"
    overrides = reference_overrides(data_root, checkpoint__every_steps=1)
    first = start_training(run_dir, overrides)
    checkpoints = run_dir / "checkpoints"
    wait_for(lambda: (checkpoints / "latest").exists() and any(checkpoints.glob("*.tmp/pytorch_model")),
             what="a checkpoint being written")
    kill_process_group(first)
    assert (latest_checkpoint(run_dir) / "trainer_state.json").is_file()
    train_to_end(run_dir, overrides)
    assert not any(checkpoints.glob("*.tmp"))
    assert losses_by_step(run_dir) == losses_by_step(zero3_reference)
    assert_same_weights(final_weights(run_dir), final_weights(zero3_reference))


def test_sigusr1_checkpoints_exits_with_requeue_code_and_resume_finishes(data_root, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(data_root, launch__zero_stage=1)
    first = start_training(run_dir, overrides, processes=1)
    wait_for(lambda: len(step_records(run_dir)) >= 5, what="step 5")
    first.send_signal(signal.SIGUSR1)
    assert first.wait(timeout=120) == REQUEUE_EXIT_CODE
    stopped_at = int((run_dir / PREEMPTED_MARKER).read_text())
    assert latest_checkpoint(run_dir).name.startswith(f"step{stopped_at:09d}")
    assert 5 <= stopped_at < 64
    train_to_end(run_dir, overrides, processes=1)
    assert sorted(losses_by_step(run_dir)) == list(range(1, 65))


def test_missing_dataset_is_named_before_any_work(data_root, tmp_path):
    finished = train(tmp_path / "run", tiny_overrides(data_root, curriculum__tasks="[{name: en}, {name: xx}]"), processes=1)
    assert finished.returncode == 2
    assert str(data_root / "xx") in finished.stderr


def test_manifest_that_disagrees_with_the_config_is_refused(data_root, tmp_path):
    finished = train(tmp_path / "run", tiny_overrides(data_root, data__seq_len=64), processes=1)
    assert finished.returncode == 2
    assert "manifest" in finished.stderr and "64" in finished.stderr


def test_corrupt_checkpoint_gives_one_clear_error_and_leaves_no_partial_checkpoint(data_root, zero1_one_rank, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(zero1_one_rank, run_dir)  # a finished run: a second cycle resumes from its last checkpoint
    overrides = tiny_overrides(data_root, launch__zero_stage=1)
    checkpoint = latest_checkpoint(run_dir)
    for shard in (checkpoint / "pytorch_model").glob("*.pt"):
        shard.write_bytes(shard.read_bytes()[:100])
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    finished = train(run_dir, [*overrides, "curriculum.cycles=2"], processes=1)
    assert finished.returncode == 2
    assert f"checkpoint {checkpoint} could not be loaded" in finished.stderr
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before


def test_stationary_problem_mixes_the_tasks_in_one_stream_with_a_probe_point_every_interval(data_root, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(data_root, launch__zero_stage=1, curriculum__problem="stationary",
                               curriculum__mix_weights="[0.5, 0.5]", curriculum__total_tokens=16384,
                               curriculum__probe_every_tokens=8192, tensorboard="true")
    train_to_end(run_dir, overrides, processes=1)
    records = step_records(run_dir)
    assert len(records) == 64 and {r["task"] for r in records} == {"mix"}
    assert records[-1]["loss"] < records[0]["loss"] - 1.0
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir())
    assert kept == ["step000000032-task0000-cycle001-mix", "step000000064-task0001-cycle002-mix"]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    losses = [event.value for event in events.Scalars("step/loss")]
    assert losses == pytest.approx([record["loss"] for record in records])


def test_without_zero_one_rank_trains_the_zero1_run_and_its_checkpoint_consolidates_and_slims(data_root, zero1_one_rank,
                                                                                             tmp_path):
    """Stage 0 steps the same torch AdamW on whole parameters that ZeRO-1 steps on its flat partition: on one rank
    the same gradient norms (clipped, as they are above 1) and losses, until rounding differences grow; its one
    model-states file consolidates to the same weights, tied embeddings included, and slims to them."""
    run_dir = train_to_end(tmp_path / "run", tiny_overrides(data_root, launch__zero_stage=0), processes=1)
    check_finished_run(run_dir)
    without_zero, zero1 = step_records(run_dir), step_records(zero1_one_rank)
    assert zero1[0]["grad_norm"] > 1.0  # clipped
    assert [r["grad_norm"] for r in without_zero[:8]] == pytest.approx([r["grad_norm"] for r in zero1[:8]], rel=1e-5)
    assert [r["loss"] for r in without_zero[:8]] == pytest.approx([r["loss"] for r in zero1[:8]], rel=1e-6)
    assert all(abs(a["loss"] / b["loss"] - 1) < 1e-2 for a, b in zip(without_zero, zero1))
    weights, reference = final_weights(run_dir), final_weights(zero1_one_rank)
    assert weights.keys() == reference.keys() and "lm_head.weight" in weights
    assert all(torch.allclose(weights[key], reference[key], atol=1e-3) for key in reference)
    slim_checkpoint(latest_checkpoint(run_dir), "fp32")
    assert_same_weights(final_weights(run_dir), weights)
