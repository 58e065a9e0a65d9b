"""The `local_slurm` fixture: a real two-node Slurm cluster on localhost (tools/local_slurm/up.sh) for tests.

One cluster serves the whole session; it is torn down with tools/local_slurm/down.sh at the end. Jobs run as
root on `node1` and `node2`, both at 127.0.0.1, so multi-node jobs set MASTER_ADDR=127.0.0.1 themselves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
UP_SCRIPT = REPO_ROOT / "tools" / "local_slurm" / "up.sh"
DOWN_SCRIPT = REPO_ROOT / "tools" / "local_slurm" / "down.sh"
PACKAGES_UNAVAILABLE_EXIT = 3  # what up.sh exits with when apt-get cannot install the packages

# States after which a job will not run again (a requeued job passes through PENDING instead).
FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
     "PREEMPTED"}
)
# "Key=Value" pairs of `scontrol -o show job`; values have no spaces except where the next key starts.
_JOB_FIELD = re.compile(r"(\S+?)=(.*?)(?=\s+\S+?=|\s*$)")


@dataclass
class LocalSlurm:
    """A running local cluster: its state folder, the environment its clients need, and job helpers."""

    state_dir: Path
    env: dict[str, str]  # os.environ plus SLURM_CONF; pass it to any Slurm client you run yourself

    @property
    def slurm_conf(self) -> Path:
        return Path(self.env["SLURM_CONF"])

    def run(self, args: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run a Slurm client command (sbatch, scontrol, squeue, scancel ...) against this cluster."""
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, **kwargs)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def sbatch(self, args: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None) -> str:
        """Submit a batch job; `env` adds variables to what the job sees. Returns the job id."""
        job_env = {**self.env, **(env or {})}
        result = subprocess.run(
            ["sbatch", "--parsable", *args], env=job_env, cwd=cwd, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result.stdout.strip().split(";")[0]

    def show_job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, NodeList, ExitCode, ...); {} once it is gone."""
        result = self.run(["scontrol", "-o", "show", "job", str(job_id)], check=False)
        if result.returncode != 0:
            return {}
        return dict(_JOB_FIELD.findall(result.stdout.strip()))

    def state(self, job_id: str) -> str:
        """The job's state now; finished jobs that slurmctld forgot are read from the job completion log."""
        job = self.show_job(job_id)
        if job:
            return job["JobState"]
        return self.completion_records(job_id)[-1]["JobState"]

    def completion_records(self, job_id: str) -> list[dict[str, str]]:
        """Lines of the job completion log for this job: one per end of a run (requeues included)."""
        log = self.state_dir / "log" / "jobcomp.txt"
        lines = log.read_text().splitlines() if log.exists() else []
        records = [dict(_JOB_FIELD.findall(line)) for line in lines]
        return [record for record in records if record.get("JobId") == str(job_id)]

    def wait(self, job_id: str, timeout: float = 120, states: frozenset[str] | set[str] = FINAL_STATES) -> str:
        """Poll until the job reaches one of `states` (default: a final state); return that state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.state(job_id)
            if state in states:
                return state
            time.sleep(0.25)
        raise TimeoutError(
            f"job {job_id} still {state or 'unknown'} after {timeout:.0f}s (waiting for {sorted(states)})\n"
            + self.log_tails()
        )

    def log_tails(self, lines: int = 20) -> str:
        """The end of every daemon log, to put in a failure message."""
        parts = []
        for log in sorted((self.state_dir / "log").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def _skip_reason() -> str | None:
    """Why the local cluster cannot be attempted here, or None."""
    if os.name != "posix" or shutil.which("bash") is None:
        return "the local Slurm cluster needs a POSIX system with bash"
    if os.geteuid() != 0:
        return "the local Slurm cluster needs root (to install the Slurm packages and run slurmd)"
    return None


CLUSTER_FIXTURES = ("local_slurm", "local_slurm_bound")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of the local clusters share an xdist group, so `pytest -n N --dist loadgroup` runs them all on
    one worker and only that worker brings the clusters up (two workers would contend for the daemons' ports
    and this machine's few CPUs)."""
    for item in items:
        if set(CLUSTER_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("local_slurm"))


def _cluster(tmp_path_factory: pytest.TempPathFactory, name: str, up_env: dict[str, str]):
    """Bring up tools/local_slurm/up.sh (with `up_env` added to its environment) in a temporary folder; yield
    the LocalSlurm; tear it down afterwards."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    state_dir = tmp_path_factory.mktemp(name)
    up = subprocess.run(["bash", str(UP_SCRIPT), str(state_dir)], capture_output=True, text=True, timeout=900,
                        env={**os.environ, **up_env})
    if up.returncode == PACKAGES_UNAVAILABLE_EXIT:
        pytest.skip(f"Slurm packages cannot be installed here: {up.stderr.strip()}")
    try:
        if up.returncode != 0:
            pytest.fail(f"tools/local_slurm/up.sh failed ({up.returncode}):\n{up.stdout}\n{up.stderr}")
        export_line = up.stdout.strip().splitlines()[-1]
        slurm_conf = export_line.removeprefix("export SLURM_CONF=")
        yield LocalSlurm(state_dir=state_dir, env={**os.environ, "SLURM_CONF": slurm_conf})
    finally:
        subprocess.run(["bash", str(DOWN_SCRIPT), str(state_dir)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory: pytest.TempPathFactory):
    """The local cluster for the session, without task binding (nodes may have more CPUs than the machine)."""
    yield from _cluster(tmp_path_factory, "local-slurm", {})


@pytest.fixture(scope="session")
def local_slurm_bound(tmp_path_factory: pytest.TempPathFactory):
    """A second local cluster whose task plugin binds every task to its allocated cores (task/affinity,
    TaskPluginParam=Cores), as many real clusters do; each node has this machine's CPUs."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("a cluster that binds tasks to cores needs 2 CPUs here to tell 1 CPU from several")
    yield from _cluster(tmp_path_factory, "local-slurm-bound",
                        {"LOCAL_SLURM_CPU_BIND": "cores", "LOCAL_SLURM_CPUS": str(len(os.sched_getaffinity(0)))})
