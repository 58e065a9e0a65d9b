"""The `slurm` probe executor's submission for every study config: GPUs, CPUs and a time limit sized to the
probe's token budget (the rule stated in configs/continual.yaml)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from plasticity_dist.model.gpt import GPT
from plasticity_dist.model.presets import get_preset
from plasticity_dist.probe.executors import SlurmExecutor
from plasticity_dist.report.plan import ASSUMED_MFU, GPU_PEAK_TFLOPS
from plasticity_dist.study.config_files import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STUDY_CONFIGS = ["continual.yaml", "stationary.yaml",
                 *(f"continual-{size}.yaml" for size in ("5M", "12M", "27M", "53M", "106M", "314M", "1B")),
                 *(f"stationary-{size}.yaml" for size in ("5M", "12M", "27M"))]
# The time rule: 20% (plan.ASSUMED_MFU) of an A100's dense bf16 peak per GPU, an output layer of up to 64K
# tokens, x1.5.
A100_PEAK_FLOPS, MAX_VOCAB, MARGIN = GPU_PEAK_TFLOPS["a100"] * 1e12, 65536, 1.5


def slurm_hours(limit: str) -> float:
    """A Slurm time limit ([D-]HH:MM:SS) in hours."""
    days, _, clock = limit.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return 24 * int(days or 0) + hours + minutes / 60 + seconds / 3600


def test_every_config_that_submits_probes_to_slurm_is_checked_here():
    not_runs = {"corpora.yaml", "control-studies.yaml"}  # the hub corpora and the control studies, not run configs
    slurm_configs = {path.name for path in CONFIGS.glob("*.yaml") if path.name not in not_runs
                     and load_config(path).probe.executor == "slurm"}
    assert slurm_configs == set(STUDY_CONFIGS)


@pytest.mark.parametrize("config_name", STUDY_CONFIGS)
def test_study_probe_jobs_ask_for_gpus_cpus_and_a_time_sized_to_their_budget(config_name):
    config = load_config(CONFIGS / config_name)
    slurm = config.probe.slurm
    command = SlurmExecutor(config.probe).sbatch_command(Path("RUN/checkpoints/tag"), Path("RUN/config.yaml"),
                                                         Path("RUN/probes/tag.log"))
    assert f"--gpus-per-node={slurm.gpus_per_node}" in command and slurm.gpus_per_node >= 1
    assert f"--cpus-per-task={slurm.cpus_per_task}" in command and slurm.cpus_per_task >= slurm.gpus_per_node
    assert f"--time={slurm.time}" in command
    preset = get_preset(config.model.preset)
    with torch.device("meta"):  # counts only: no memory for the weights
        model = GPT(preset.gpt_config(MAX_VOCAB, config.data.seq_len))
    flops = config.probe.tokens * model.flops_per_token(output_layer=True)
    needed_hours = flops / (slurm.nodes * slurm.gpus_per_node * A100_PEAK_FLOPS * ASSUMED_MFU) * MARGIN / 3600
    assert slurm_hours(slurm.time) == math.ceil(needed_hours)
