"""Where probes run: `inline` (blocking child process), `local` (detached processes on spare CPUs/GPUs),
`slurm` (`sbatch slurm/probe.sh`). Each submits `plasticity-dist probe --checkpoint DIR` and reports
whether a submission is still running; the scheduler does the rest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

from plasticity_dist.common.processes import is_process_alive
from plasticity_dist.study.config import ProbeSection

REPO_ROOT = Path(__file__).resolve().parents[2]
# Variables a launcher sets for the trainer's own process group; a probe must start a world of its own.
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                      "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "CROSS_RANK",
                      "CROSS_SIZE", "LOCAL_SIZE", "ACCELERATE_USE_DEEPSPEED")


def probe_command(checkpoint: Path, config_path: Path) -> list[str]:
    return [sys.executable, "-m", "plasticity_dist.cli", "probe", "--checkpoint", str(checkpoint),
            "--config", str(config_path)]


def probe_environment(gpus: str = "") -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_VARIABLES
           and (key == "SLURM_CONF" or not key.startswith(("TORCHELASTIC_", "SLURM_")))}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return env


class Executor(Protocol):
    max_running: int | None  # probes this executor runs at once; None: the cluster's scheduler decides

    def submit(self, checkpoint: Path, config_path: Path, log_path: Path) -> dict[str, Any]: ...

    def is_running(self, handle: dict[str, Any]) -> bool: ...


class InlineExecutor:
    """Runs the probe to completion before returning (for debugging)."""

    max_running = 1

    def submit(self, checkpoint: Path, config_path: Path, log_path: Path) -> dict[str, Any]:
        with open(log_path, "w") as log:
            finished = subprocess.run(probe_command(checkpoint, config_path), env=probe_environment(),
                                      stdout=log, stderr=subprocess.STDOUT, check=False)
        return {"returncode": finished.returncode, "log": str(log_path)}

    def is_running(self, handle: dict[str, Any]) -> bool:
        return False


class LocalExecutor:
    """Detached child processes, optionally pinned to `local_cpus` and `local_gpus`."""

    def __init__(self, probe: ProbeSection) -> None:
        self.max_running: int | None = probe.max_concurrent
        self.cpus = set(probe.local_cpus)
        self.gpus = probe.local_gpus
        self.children: dict[int, subprocess.Popen] = {}

    def submit(self, checkpoint: Path, config_path: Path, log_path: Path) -> dict[str, Any]:
        pin = (lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None
        env = probe_environment(self.gpus)
        # CPU threads: the pinned CPUs, else one, so that a probe never oversubscribes the trainer's cores
        # (on CPU, two processes each running all-core thread pools slow each other down many times over)
        env["OMP_NUM_THREADS"] = str(len(self.cpus) or 1)
        with open(log_path, "w") as log:
            child = subprocess.Popen(probe_command(checkpoint, config_path), env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pin)
        self.children[child.pid] = child
        return {"pid": child.pid, "log": str(log_path)}

    def is_running(self, handle: dict[str, Any]) -> bool:
        child = self.children.get(handle["pid"])
        if child is not None:
            return child.poll() is None
        return is_process_alive(handle["pid"])  # a probe started before this process (a resumed trainer)


class SlurmExecutor:
    """`sbatch slurm/probe.sh CHECKPOINT CONFIG` with the partition, account, time and nodes from config."""

    max_running = None

    def __init__(self, probe: ProbeSection) -> None:
        self.slurm = probe.slurm

    def sbatch_command(self, checkpoint: Path, config_path: Path, log_path: Path) -> list[str]:
        """The submission of one probe; options left empty (or 0) in config take the cluster's default."""
        slurm = self.slurm
        settings = {"nodes": slurm.nodes, "time": slurm.time, "output": log_path, "job-name": f"probe-{checkpoint.name}",
                    "partition": slurm.partition, "account": slurm.account, "gpus-per-node": slurm.gpus_per_node,
                    "cpus-per-task": slurm.cpus_per_task}
        options = [f"--{name}={value}" for name, value in settings.items() if value]
        return ["sbatch", "--parsable", *options, *slurm.extra_args,
                str(REPO_ROOT / "slurm" / "probe.sh"), str(checkpoint), str(config_path)]

    def submit(self, checkpoint: Path, config_path: Path, log_path: Path) -> dict[str, Any]:
        command = self.sbatch_command(checkpoint, config_path, log_path)
        submitted = subprocess.run(command, capture_output=True, text=True, env=probe_environment(), check=False)
        if submitted.returncode != 0:
            raise RuntimeError(f"sbatch of the probe for {checkpoint} failed: {submitted.stderr.strip()}")
        return {"job_id": submitted.stdout.strip().split(";")[0], "log": str(log_path)}

    def is_running(self, handle: dict[str, Any]) -> bool:
        queued = subprocess.run(["squeue", "--noheader", "--jobs", handle["job_id"], "--format=%T"],
                                capture_output=True, text=True, check=False)
        return queued.returncode == 0 and bool(queued.stdout.strip())


def make_executor(probe: ProbeSection) -> Executor:
    if probe.executor == "inline":
        return InlineExecutor()
    if probe.executor == "local":
        return LocalExecutor(probe)
    return SlurmExecutor(probe)
