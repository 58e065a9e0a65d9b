"""Turn the launch environment and our config into an `Accelerator` running a DeepSpeed engine (ZeRO 1-3, or
stage 0: none).

Works under `accelerate launch`, `torchrun`, `deepspeed` and as a plain single process (for which the
rendezvous variables are filled in here). The DeepSpeed JSON's `"auto"` values are filled from our
config, so micro-batch, accumulation, clipping and precision always agree with it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DeepSpeedPlugin
from accelerate.utils import InitProcessGroupKwargs

from plasticity_dist.common.logging import get_logger
from plasticity_dist.common.processes import free_port, skip_finalization_at_exit, usable_cpus
from plasticity_dist.study.config import ExperimentConfig
from plasticity_dist.study.errors import ConfigError

DS_CONFIG_DIR = Path(__file__).resolve().parents[2] / "ds_configs"
log = get_logger()


@dataclass(frozen=True)
class WorldInfo:
    rank: int
    world_size: int
    local_rank: int


def init_world_env() -> WorldInfo:
    """Read rank and world size from the launcher; a bare single process gets a one-rank world."""
    if "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    return WorldInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))


def end_distributed() -> None:
    """Shut the process group down while Python is alive, and have the process leave without interpreter
    finalization (`common.processes.exit_process` says why)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        skip_finalization_at_exit()


def report_cpus(config: ExperimentConfig, world: WorldInfo) -> int:
    """Log the CPUs this rank may run on (its affinity mask, which a node's ranks and their loader workers
    share); under Slurm, warn when they are fewer than those processes: a step that was not given the job's
    --cpus-per-task runs on one CPU on clusters that bind tasks to cores."""
    cpus, node_ranks = usable_cpus(), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    processes = node_ranks * (1 + config.data.num_workers)
    log.info(f"rank {world.rank} may run on {cpus} CPU(s) (its affinity), shared by {node_ranks} rank(s) on this "
             f"node with {config.data.num_workers} loader worker(s) each")
    if cpus < processes and "SLURM_JOB_ID" in os.environ:
        log.warning(f"rank {world.rank}: {processes} processes (ranks and loader workers) on this node share "
                    f"{cpus} CPU(s); under Slurm, give the job --cpus-per-task={processes} or more (slurm/common.sh "
                    f"passes it on to the step)")
    return cpus


def use_bf16(config: ExperimentConfig) -> bool:
    """bf16 on GPU, fp32 on CPU and at stage 0 (no ZeRO), unless `launch.precision` says otherwise."""
    if config.launch.precision == "auto":
        return torch.cuda.is_available() and config.launch.zero_stage > 0
    return config.launch.precision == "bf16"


def deepspeed_config(config: ExperimentConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON for `launch.zero_stage` (or `launch.ds_config`) with every "auto" filled in."""
    path = Path(config.launch.ds_config) if config.launch.ds_config else DS_CONFIG_DIR / f"zero{config.launch.zero_stage}.json"
    if not path.is_file():
        raise ConfigError(f"launch.ds_config: DeepSpeed config {path} does not exist")
    try:
        ds_config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"launch.ds_config: {path} is not valid JSON: {error}") from None
    stage = ds_config.get("zero_optimization", {}).get("stage")
    if stage != config.launch.zero_stage:
        raise ConfigError(f"launch.zero_stage={config.launch.zero_stage} but {path} sets ZeRO stage {stage}")
    if "optimizer" in ds_config or "scheduler" in ds_config:
        raise ConfigError(
            f"{path} declares an optimizer or scheduler; plasticity-dist builds torch AdamW itself "
            "(resume is bitwise only then) and computes the schedule from the config"
        )
    fills = {
        "train_micro_batch_size_per_gpu": config.data.micro_batch_size,
        "gradient_accumulation_steps": config.data.batch_plan(world_size).accum_steps,
        "train_batch_size": config.data.global_batch_size,
        "gradient_clipping": config.optimizer.grad_clip,
    }
    for key, value in fills.items():
        if ds_config.get(key, "auto") not in ("auto", value):
            raise ConfigError(f"{path} sets {key}={ds_config[key]} but the config implies {value}; use \"auto\"")
        ds_config[key] = value
    ds_config["bf16"] = {"enabled": use_bf16(config)}
    return ds_config


def build_accelerator(config: ExperimentConfig, world: WorldInfo) -> Accelerator:
    """An Accelerator whose DeepSpeed plugin holds our filled-in config.

    Accelerate initialises DeepSpeed's process group only when ACCELERATE_USE_DEEPSPEED is set, which
    `accelerate launch --use_deepspeed` does; we set it for every other launcher (torchrun, plain python).
    Without a GPU, Accelerate finds no backend of its own and would run each rank as a world of one:
    naming gloo makes it join DeepSpeed's process group.
    """
    report_cpus(config, world)
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config(config, world.world_size))
    cpu_backend = [] if torch.cuda.is_available() else [InitProcessGroupKwargs(backend="gloo")]
    return Accelerator(
        deepspeed_plugin=plugin,
        kwargs_handlers=cpu_backend,
        mixed_precision="bf16" if use_bf16(config) else "no",
        gradient_accumulation_steps=plugin.deepspeed_config["gradient_accumulation_steps"],
    )
