"""The slurm/ scripts give every process the CPUs its job asked for, on a local cluster whose task plugin binds
tasks to their allocated cores (task/affinity with TaskPluginParam=Cores, as many real clusters are set up).
What a process sees is its affinity mask (os.sched_getaffinity), which that plugin sets with sched_setaffinity.

Since Slurm 22.05 a job step does not inherit the job's --cpus-per-task: the first test shows that a plain
`srun` on such a cluster runs on one CPU, so the others pass only because slurm/common.sh passes it on.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from plasticity_dist.common.run_layout import RunLayout
from runs import REPO, latest_checkpoint, tiny_overrides
from slurm_cluster import LocalSlurm
from test_local_slurm import write_script
from test_slurm_jobs import JOB_TIMEOUT_S, wait_until_finished

AFFINITY = f"{sys.executable} -c 'import os; print(\"cpus\", len(os.sched_getaffinity(0)))'"


def job_cpus() -> int:
    """What each job here asks for: every CPU of this machine (a bound cluster's node has as many)."""
    return len(os.sched_getaffinity(0))


def test_a_step_without_cpus_per_task_runs_on_one_cpu_of_a_job_that_asked_for_more(local_slurm_bound, tmp_path):
    script = write_script(tmp_path / "affinity.sh", f"""
        echo "batch $({AFFINITY})"
        echo "plain step $(srun --ntasks=1 {AFFINITY})"
        echo "step with the job's CPUs $(srun --ntasks=1 --cpus-per-task=$SLURM_CPUS_PER_TASK {AFFINITY})"
        """)
    job_id = local_slurm_bound.sbatch([f"--cpus-per-task={job_cpus()}", f"--output={tmp_path}/%j.out", str(script)])
    log_path = tmp_path / f"{job_id}.out"
    assert wait_until_finished(local_slurm_bound, job_id, log_path) == "COMPLETED"
    assert log_path.read_text().splitlines() == [
        f"batch cpus {job_cpus()}", "plain step cpus 1", f"step with the job's CPUs cpus {job_cpus()}"]


def logged_cpus(log_path: Path) -> list[int]:
    """The CPU counts that rank 0 logged at each start in a job's log."""
    return [int(count) for count in re.findall(r"rank 0 may run on (\d+) CPU", log_path.read_text())]


def test_training_and_its_slurm_probe_ranks_run_on_the_cpus_their_jobs_asked_for(local_slurm_bound: LocalSlurm,
                                                                                 data_root, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(data_root, probe__enabled="true", probe__executor="slurm", probe__baseline="false",
                               probe__tokens=4096, probe__eval_points=2, probe__eval_tokens=2048,
                               probe__slurm__cpus_per_task=job_cpus())
    job_id = local_slurm_bound.sbatch(
        ["--nodes=1", f"--cpus-per-task={job_cpus()}", f"--output={tmp_path}/train-%j.out", "slurm/train_tiny.sh",
         *overrides], env={"PLASTICITY_MASTER_ADDR": "127.0.0.1", "RUN_DIR": str(run_dir)}, cwd=REPO)
    train_log = tmp_path / f"train-{job_id}.out"
    assert wait_until_finished(local_slurm_bound, job_id, train_log) == "COMPLETED"
    assert logged_cpus(train_log) == [job_cpus()]

    tag = latest_checkpoint(run_dir).name  # the cycle end, probed by a job of its own
    pending = RunLayout(run_dir).probes / "pending" / f"{tag}.json"
    if pending.exists():  # the probe job outlives the trainer: wait for it
        submission = json.loads(pending.read_text())["submissions"][-1]
        assert wait_until_finished(local_slurm_bound, submission["job_id"], Path(submission["log"])) == "COMPLETED"
    assert logged_cpus(RunLayout(run_dir).probe_log(tag, 1)) == [job_cpus()]


def test_preprocess_array_tasks_run_on_the_cpus_they_asked_for(local_slurm_bound, tmp_path):
    out = tmp_path / "vi"
    job_id = local_slurm_bound.sbatch(
        ["--array=0-1", f"--cpus-per-task={job_cpus()}", f"--output={tmp_path}/preprocess-%a.out",
         "slurm/preprocess.sh", "--source", "synthetic:vi", "--tokens", "20000", "--seq-len", "32",
         "--shard-tokens", "5000", "--out", str(out), "--workers", str(job_cpus())], cwd=REPO)
    for task in (0, 1):
        log_path = tmp_path / f"preprocess-{task}.out"
        assert wait_until_finished(local_slurm_bound, f"{job_id}_{task}", log_path) == "COMPLETED"
        assert f"with {job_cpus()} worker(s) on {job_cpus()} CPU(s)" in log_path.read_text()
