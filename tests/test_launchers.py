"""Every launcher the README names trains the tiny config to the same per-step losses: accelerate launch,
torchrun and deepspeed on 2 ranks, plain `python -m` on 1 (same global batch, so the same data order)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runs import REPO, TINY_CONFIG, free_port, step_records, tiny_overrides

BIN = Path(sys.executable).parent
CLI = ["plasticity_dist.cli", "train", "--config", str(TINY_CONFIG)]
LAUNCHERS = {
    "torchrun": lambda port: [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(port), "-m", *CLI],
    "deepspeed": lambda port: [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(port), "--module", *CLI],
}
FIXTURE_RUNS = {"accelerate": "zero1_two_ranks", "python": "zero1_one_rank"}  # started by tests/runs.py


def losses(run_dir: Path) -> dict[int, float]:
    return {record["step"]: record["loss"] for record in step_records(run_dir)}


@pytest.mark.parametrize("launcher", ["accelerate", "torchrun", "deepspeed", "python"])
def test_every_launcher_reaches_the_same_per_step_losses(launcher, data_root, zero1_two_ranks, request, tmp_path):
    if launcher in FIXTURE_RUNS:
        run_dir = request.getfixturevalue(FIXTURE_RUNS[launcher])
    else:
        run_dir = tmp_path / "run"
        command = [*LAUNCHERS[launcher](free_port()), f"run_dir={run_dir}",
                   *tiny_overrides(data_root, launch__zero_stage=1)]
        finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, (finished.stdout + finished.stderr)[-3000:]
    reached, reference = losses(run_dir), losses(zero1_two_ranks)
    assert sorted(reached) == list(range(1, 65)) and reached.keys() == reference.keys()
    # One rank sums a batch in another order, and the deepspeed launcher sets its own thread count: float
    # differences of ~1e-5 over the first task (measured: <= 7e-6), which the loss spike of the zh task at
    # step 50 amplifies to under 1 % (measured: <= 0.7 %); torchrun matches accelerate exactly.
    for step, loss in reached.items():
        assert loss == pytest.approx(reference[step], rel=1e-4 if step <= 32 else 1e-2), step
