"""The slurm/ job scripts on a real two-node Slurm cluster (tools/local_slurm, CPU, gloo): training across
nodes, preemption by USR1 with requeue and exact resume, probe jobs, and preprocessing as a job array.

Jobs are submitted as users do (`sbatch slurm/train_tiny.sh ...` from the repository root). The local
nodes' names do not resolve, so every job gets PLASTICITY_MASTER_ADDR=127.0.0.1.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plasticity_dist.cli import main as cli_main
from plasticity_dist.common.run_layout import RunLayout
from runs import (REPO, assert_same_weights, copy_for_probing, final_weights, latest_checkpoint, probe_result,
                  step_records, tiny_overrides, wait_for)
from slurm_cluster import LocalSlurm

JOB_TIMEOUT_S = 300  # generous: the first DeepSpeed job on a machine compiles its CPU communication op
TASK_STEPS = 128  # per task (2 tasks): long enough for a signal to land mid-task


def slurm_overrides(data_root: Path, **extra: object) -> list[str]:
    """The tiny 2-task run with ZeRO-2, a mid-task checkpoint kept by keep_last, and a small probe."""
    settings = dict(curriculum__task_tokens=TASK_STEPS * 8 * 32, checkpoint__keep_last=3, launch__zero_stage=2,
                    probe__tokens=8192, probe__eval_points=3, probe__eval_tokens=2048)
    return tiny_overrides(data_root, **{**settings, **extra})


def submit_training(local_slurm: LocalSlurm, run_dir: Path, overrides: list[str]) -> str:
    """`sbatch --nodes=2 slurm/train_tiny.sh OVERRIDES...` from the repository root, run dir from RUN_DIR."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return local_slurm.sbatch(
        ["--nodes=2", f"--output={run_dir.parent}/train-%j.out", "slurm/train_tiny.sh", *overrides],
        env={"PLASTICITY_MASTER_ADDR": "127.0.0.1", "RUN_DIR": str(run_dir)}, cwd=REPO,
    )


def train_log(run_dir: Path, job_id: str) -> Path:
    return run_dir.parent / f"train-{job_id}.out"


def wait_until_finished(local_slurm: LocalSlurm, job_id: str, log_path: Path) -> str:
    """The job's final state; on anything but COMPLETED the assertion shows the end of its log."""
    state = local_slurm.wait(job_id, timeout=JOB_TIMEOUT_S)
    if state != "COMPLETED" and log_path.exists():
        state += "\n" + "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
    return state


def checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(path.name[4:13]) for path in (run_dir / "checkpoints").glob("step*") if path.is_dir())


def step_values(run_dir: Path) -> dict[int, tuple]:
    return {r["step"]: (r["task"], r["tokens"], r["loss"], r["lr"], r["grad_norm"]) for r in step_records(run_dir)}


@pytest.fixture(scope="module")
def two_node_run(local_slurm, data_root, tmp_path_factory) -> tuple[str, Path]:
    """An uninterrupted two-node run whose trainer sends its cycle-end probe to Slurm: the first test's
    subject and the preemption test's yardstick."""
    run_dir = tmp_path_factory.mktemp("two-node") / "run"
    overrides = slurm_overrides(data_root, probe__enabled="true", probe__executor="slurm", probe__baseline="false")
    job_id = submit_training(local_slurm, run_dir, overrides)
    assert wait_until_finished(local_slurm, job_id, train_log(run_dir, job_id)) == "COMPLETED"
    return job_id, run_dir


def test_two_node_job_trains_with_two_ranks_and_completes(local_slurm, two_node_run):
    job_id, run_dir = two_node_run
    job = local_slurm.show_job(job_id)
    assert (job["NodeList"], job["NumNodes"], job["Restarts"]) == ("node[1-2]", "2", "0")
    assert "2 node(s) x 1 process(es)" in train_log(run_dir, job_id).read_text()
    records = step_records(run_dir)
    assert [r["step"] for r in records] == list(range(1, 2 * TASK_STEPS + 1))
    assert records[TASK_STEPS - 1]["loss"] < records[0]["loss"] - 1.0
    assert checkpoint_steps(run_dir) == [TASK_STEPS, 2 * TASK_STEPS]
    final = latest_checkpoint(run_dir)
    assert final.name == f"step{2 * TASK_STEPS:09d}-task0001-cycle001-zh"
    assert json.loads((final / "trainer_state.json").read_text())["world_size"] == 2
    optimizer_shards = sorted((final / "pytorch_model").glob("zero_pp_rank_*_optim_states.pt"))
    assert len(optimizer_shards) == 2
    shard = torch.load(optimizer_shards[0], map_location="cpu", weights_only=False)["optimizer_state_dict"]
    assert int(shard["zero_stage"]) == 2 and set(shard["partition_count"]) == {2}


def test_usr1_checkpoints_requeues_and_resumes_to_the_uninterrupted_weights(local_slurm, data_root, two_node_run,
                                                                              tmp_path):
    run_dir = tmp_path / "run"
    job_id = submit_training(local_slurm, run_dir, slurm_overrides(data_root))
    metrics = run_dir / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and '"event": "step"' in metrics.read_text(), timeout=JOB_TIMEOUT_S,
             what="the first logged training step")
    local_slurm.run(["scancel", "--signal=USR1", job_id])  # to the tasks of the running step, as preemption does

    assert wait_until_finished(local_slurm, job_id, train_log(run_dir, job_id)) == "COMPLETED"
    assert local_slurm.show_job(job_id)["Restarts"] == "1"
    log = train_log(run_dir, job_id).read_text()
    assert "requeueing job" in log and "(restart 1)" in log and "resumed from" in log
    stopped_at, task_end, run_end = checkpoint_steps(run_dir)  # the stop checkpoint survives keep_last=3
    assert 0 < stopped_at < task_end == TASK_STEPS and run_end == 2 * TASK_STEPS
    assert not (run_dir / "preempted").exists()
    _, reference = two_node_run
    assert step_values(run_dir) == step_values(reference)
    assert_same_weights(final_weights(run_dir), final_weights(reference))


def fresh_checkout(dest: Path) -> Path:
    """The repository as a fresh clone of what would be committed: every file git tracks or would track,
    none that it ignores (so no job logs, runs or .venv from earlier work)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (REPO / name).is_file():  # not a tracked file deleted in the working tree
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def test_a_study_script_submitted_from_a_fresh_clone_completes_and_logs_to_logs(local_slurm, data_root, tmp_path):
    checkout = fresh_checkout(tmp_path / "clone")
    cpu_cluster_options = ["--gpus-per-node=0", "--cpus-per-task=1", "--nodes=1", "--time=00:10:00"]
    job_id = local_slurm.sbatch([*cpu_cluster_options, "slurm/train_5M.sh", *tiny_overrides(data_root)],
                                env={"PLASTICITY_VENV": sys.prefix}, cwd=checkout)  # no --output: the script's own
    log_path = checkout / "logs" / f"plasticity-5M-{job_id}.out"
    assert wait_until_finished(local_slurm, job_id, log_path) == "COMPLETED"
    assert "run complete" in log_path.read_text()
    assert len(step_records(checkout / "runs" / "continual-5M")) == 64


def check_probe_result(run_dir: Path, tag: str) -> None:
    result = json.loads((run_dir / "probes" / f"{tag}.json").read_text())
    assert (result["checkpoint"], result["cycle"], result["tasks_trained"]) == (tag, 1, 2)
    assert result["eval_tokens"] == [0, 4096, 8192]
    assert result["val_losses"][-1] < result["val_losses"][0]
    assert math.isfinite(result["auc"]) and result["auc"] > 0


def test_slurm_probe_executor_submits_probe_sh_for_the_cycle_end_checkpoint(local_slurm, two_node_run):
    _, run_dir = two_node_run
    tag = latest_checkpoint(run_dir).name  # the end of cycle 1, kept for its probe
    if not (run_dir / "probes" / f"{tag}.json").exists():  # the probe job outlives the trainer: wait for it
        request = json.loads((run_dir / "probes" / "pending" / f"{tag}.json").read_text())
        submission = request["submissions"][-1]
        assert wait_until_finished(local_slurm, submission["job_id"], Path(submission["log"])) == "COMPLETED"
    check_probe_result(run_dir, tag)


# A probe long enough (256 steps of 8 x 32 tokens on vi) for a signal sent after its first step to land mid-way.
LONG_PROBE = ["probe.dataset=vi", "probe.tokens=65536", "probe.eval_points=5", "probe.eval_tokens=2048"]


def submit_probe(local_slurm: LocalSlurm, checkpoint: Path) -> tuple[str, Path]:
    """`sbatch slurm/probe.sh CHECKPOINT` on one node from the repository root, as the slurm executor does;
    returns the job id and its log."""
    logs = checkpoint.parent.parent
    job_id = local_slurm.sbatch(["--nodes=1", f"--output={logs}/probe-%j.out", "slurm/probe.sh", str(checkpoint)],
                                env={"PLASTICITY_MASTER_ADDR": "127.0.0.1"}, cwd=REPO)
    return job_id, logs / f"probe-{job_id}.out"


def test_usr1_to_a_probe_job_checkpoints_requeues_and_ends_with_the_uninterrupted_auc(local_slurm, two_node_run,
                                                                                      tmp_path):
    _, run_dir = two_node_run
    left_alone, signalled = (copy_for_probing(run_dir, tmp_path / name, LONG_PROBE) for name in ("left-alone", "run"))
    left_alone_job, left_alone_log = submit_probe(local_slurm, left_alone)
    job_id, log_path = submit_probe(local_slurm, signalled)
    probe_run = RunLayout.of_checkpoint(signalled).probe_run(signalled.name)
    wait_for(lambda: probe_run.metrics.is_file() and '"event": "step"' in probe_run.metrics.read_text(),
             timeout=JOB_TIMEOUT_S, what="the probe's first step")
    local_slurm.run(["scancel", "--signal=USR1", job_id])  # to the tasks of the running step, as preemption does

    assert wait_until_finished(local_slurm, job_id, log_path) == "COMPLETED"
    assert wait_until_finished(local_slurm, left_alone_job, left_alone_log) == "COMPLETED"
    assert local_slurm.show_job(job_id)["Restarts"] == "1"
    log = log_path.read_text()
    stopped_at = int(re.search(r"checkpointing at step (\d+)", log).group(1))
    assert 0 < stopped_at < 256, "the probe ended before the signal"
    assert "requeueing job" in log and "(restart 1)" in log and f"resumed from {probe_run.checkpoints}" in log
    assert [record["step"] for record in step_records(probe_run.root)] == list(range(1, 257))
    result, reference = probe_result(signalled), probe_result(left_alone)
    assert result["eval_tokens"] == reference["eval_tokens"] == [step * 256 for step in (0, 64, 128, 192, 256)]
    assert result["val_losses"] == reference["val_losses"]  # exactly: CPU resume is bitwise
    assert result["auc"] == reference["auc"]
    assert not probe_run.checkpoints.exists() and not probe_run.preempted.exists()


PREPROCESS_ARGS = ["--source", "synthetic:vi", "--tokens", "50000", "--seq-len", "32", "--shard-tokens", "10000",
                   "--rows-per-block", "64", "--val-tokens", "4096"]  # 6 training shards and 1 validation shard


def dataset_files(dataset_dir: Path) -> dict[str, bytes]:
    """Every file of a dataset (both splits) but the preprocessing progress markers, by relative path."""
    return {str(path.relative_to(dataset_dir)): path.read_bytes() for path in sorted(dataset_dir.rglob("*"))
            if path.is_file() and ".progress" not in path.parts}


def test_preprocess_array_job_builds_the_dataset_of_one_process_byte_for_byte(local_slurm, tmp_path):
    array_out, single_out = tmp_path / "array" / "vi", tmp_path / "single" / "vi"
    job_id = local_slurm.sbatch(
        ["--array=0-1", "--cpus-per-task=1", f"--output={tmp_path}/preprocess-%a.out", "slurm/preprocess.sh",
         *PREPROCESS_ARGS, "--out", str(array_out)],
        cwd=REPO,
    )
    for task in (0, 1):
        assert wait_until_finished(local_slurm, f"{job_id}_{task}", tmp_path / f"preprocess-{task}.out") == "COMPLETED"

    logs = [(tmp_path / f"preprocess-{task}.out").read_text() for task in (0, 1)]
    built = [int(count) for log in logs for count in re.findall(r"built (\d+) shards", log)]
    assert len(built) == 2 and min(built) > 0 and sum(built) == 7  # each task built its share
    assert any("OK " in log for log in logs)  # the task that completed the dataset verified it
    assert cli_main(["verify", str(array_out)]) == 0
    assert cli_main(["preprocess", *PREPROCESS_ARGS, "--out", str(single_out)]) == 0
    array_files = dataset_files(array_out)
    assert "manifest.json" in array_files and "val/manifest.json" in array_files
    assert array_files == dataset_files(single_out)
