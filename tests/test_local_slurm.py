"""The local Slurm cluster behaves like the real clusters our slurm/ scripts target: multi-node steps,
USR1 before the time limit, requeue with SLURM_RESTART_COUNT, and torch.distributed across nodes."""

import json
import sys
import textwrap
import time

from slurm_cluster import LocalSlurm


def write_script(path, body: str):
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return path


def wait_for_file_text(path, text: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{path} did not contain {text!r} within {timeout}s")


def test_two_node_job_runs_one_task_on_each_node_and_completes(local_slurm: LocalSlurm, tmp_path):
    tasks_file = tmp_path / "tasks.txt"
    script = write_script(
        tmp_path / "two_nodes.sh",
        f"""
        srun --ntasks-per-node=1 bash -c 'echo "$SLURMD_NODENAME $SLURM_NODEID $SLURM_PROCID" >> {tasks_file}'
        """,
    )
    job_id = local_slurm.sbatch(["--nodes=2", f"--output={tmp_path}/%j.log", str(script)])

    assert local_slurm.wait(job_id, timeout=60) == "COMPLETED"
    tasks = sorted(line.split() for line in tasks_file.read_text().splitlines())
    assert [node for node, _, _ in tasks] == ["node1", "node2"]
    assert sorted(node_id for _, node_id, _ in tasks) == ["0", "1"]
    assert sorted(rank for _, _, rank in tasks) == ["0", "1"]
    assert local_slurm.show_job(job_id)["NodeList"] == "node[1-2]"


USR1_RECORDING_JOB = """
trap 'echo "USR1 restart=${SLURM_RESTART_COUNT:-0}" >> "$RECORD"; exit 0' USR1
echo "started restart=${SLURM_RESTART_COUNT:-0}" >> "$RECORD"
for _ in $(seq 900); do sleep 0.2; done
"""


def test_usr1_reaches_the_batch_script_from_scancel_and_before_the_time_limit(local_slurm, tmp_path):
    script = write_script(tmp_path / "record_usr1.sh", USR1_RECORDING_JOB)
    on_demand_record, time_limit_record = tmp_path / "on_demand.txt", tmp_path / "time_limit.txt"
    # Slurm checks warning times every ~30 s and may signal up to 60 s early: with a one-minute limit,
    # B:USR1@20 arrives 10-40 s after the start, never before the trap is set.
    time_limit_job = local_slurm.sbatch(
        ["--time=1", "--signal=B:USR1@20", f"--output={tmp_path}/%j.log", str(script)],
        env={"RECORD": str(time_limit_record)},
    )
    on_demand_job = local_slurm.sbatch(
        [f"--output={tmp_path}/%j.log", str(script)], env={"RECORD": str(on_demand_record)}
    )
    wait_for_file_text(on_demand_record, "started", timeout=30)
    local_slurm.run(["scancel", "--signal=USR1", "--batch", on_demand_job])

    assert local_slurm.wait(on_demand_job, timeout=30) == "COMPLETED"
    assert on_demand_record.read_text().splitlines() == ["started restart=0", "USR1 restart=0"]
    assert local_slurm.wait(time_limit_job, timeout=75) == "COMPLETED"
    assert time_limit_record.read_text().splitlines() == ["started restart=0", "USR1 restart=0"]


def test_scontrol_requeue_runs_a_running_job_again_with_its_restart_count(local_slurm, tmp_path):
    record = tmp_path / "runs.txt"
    script = write_script(
        tmp_path / "requeued.sh",
        """
        echo "run restart=${SLURM_RESTART_COUNT:-0}" >> "$RECORD"
        [[ ${SLURM_RESTART_COUNT:-0} -ge 1 ]] && exit 0
        for _ in $(seq 900); do sleep 0.2; done
        """,
    )
    job_id = local_slurm.sbatch(
        ["--requeue", "--open-mode=append", f"--output={tmp_path}/%j.log", str(script)],
        env={"RECORD": str(record)},
    )
    wait_for_file_text(record, "run restart=0", timeout=30)
    local_slurm.run(["scontrol", "requeue", job_id])

    assert local_slurm.wait(job_id, timeout=60) == "COMPLETED"
    assert record.read_text().splitlines() == ["run restart=0", "run restart=1"]
    assert local_slurm.show_job(job_id)["Restarts"] == "1"


def test_job_requeues_itself_on_usr1_and_resumes(local_slurm, tmp_path):
    """The preemption path of the train scripts: USR1 to every task of a step, the batch script requeues."""
    record = tmp_path / "events.txt"
    script = write_script(
        tmp_path / "self_requeue.sh",
        """
        srun --ntasks-per-node=1 bash -c '
            trap "echo \\"task $SLURM_PROCID saw USR1\\" >> $RECORD; exit 0" USR1
            echo "task $SLURM_PROCID restart=${SLURM_RESTART_COUNT:-0}" >> $RECORD
            [[ ${SLURM_RESTART_COUNT:-0} -ge 1 ]] && exit 0
            for _ in $(seq 900); do sleep 0.2; done'
        if [[ ${SLURM_RESTART_COUNT:-0} -eq 0 ]]; then
            scontrol requeue "$SLURM_JOB_ID"
            sleep 60  # requeue ends this run; the next one starts with SLURM_RESTART_COUNT=1
        fi
        """,
    )
    job_id = local_slurm.sbatch(
        ["--nodes=2", "--requeue", "--open-mode=append", f"--output={tmp_path}/%j.log", str(script)],
        env={"RECORD": str(record)},
    )
    wait_for_file_text(record, "task 1 restart=0", timeout=30)
    wait_for_file_text(record, "task 0 restart=0", timeout=10)
    local_slurm.run(["scancel", "--signal=USR1", job_id])  # without --batch: the steps' tasks, not the shell

    assert local_slurm.wait(job_id, timeout=60) == "COMPLETED"
    events = record.read_text().splitlines()
    assert sorted(events[:4]) == [
        "task 0 restart=0", "task 0 saw USR1", "task 1 restart=0", "task 1 saw USR1"
    ]
    assert sorted(events[4:]) == ["task 0 restart=1", "task 1 restart=1"]


ALL_REDUCE = """
import datetime, json, os, sys
import torch
import torch.distributed as dist

rank, world_size = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
dist.init_process_group(
    "gloo", init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
    rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60),
)
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as out:
    json.dump({"node": os.environ["SLURMD_NODENAME"], "world_size": world_size, "sum": total.item()}, out)
dist.destroy_process_group()
"""


def test_torch_distributed_all_reduce_across_two_slurm_nodes(local_slurm, tmp_path):
    (tmp_path / "all_reduce.py").write_text(ALL_REDUCE)
    script = write_script(
        tmp_path / "all_reduce.sh",
        f"""
        # node1/node2 do not resolve; the scripts under slurm/ take the same override.
        export MASTER_ADDR=${{MASTER_ADDR_OVERRIDE:-127.0.0.1}}
        export MASTER_PORT=$((10000 + SLURM_JOB_ID % 10000))
        srun --ntasks-per-node=1 "$PYTHON" {tmp_path}/all_reduce.py {tmp_path}
        """,
    )
    job_id = local_slurm.sbatch(
        ["--nodes=2", f"--output={tmp_path}/%j.log", str(script)],
        env={"PYTHON": sys.executable, "GLOO_SOCKET_IFNAME": "lo"},
    )

    state = local_slurm.wait(job_id, timeout=90)
    assert state == "COMPLETED", (tmp_path / f"{job_id}.log").read_text()
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert sorted(result["node"] for result in results) == ["node1", "node2"]
    assert all(result == {**result, "world_size": 2, "sum": 3.0} for result in results)
