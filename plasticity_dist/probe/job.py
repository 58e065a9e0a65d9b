"""One probe: load a checkpoint's weights, train a copy on the probe language, write the curve and AUC.

The copy gets a fresh AdamW and the probe's token budget; validation loss on the probe's held-out split
(`<probe dataset>/val`) is measured at `probe.eval_points` steps spaced by `probe.eval_spacing` (linear or
log), step 0 and the last step included. The checkpoint is only read. The result goes to
`RUN/probes/<tag>.json`, written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from plasticity_dist.analysis.auc import curve_auc
from plasticity_dist.checkpoint import load_consolidated_weights, read_trainer_state
from plasticity_dist.config import ExperimentConfig, load_config
from plasticity_dist.curriculum import dataset_path
from plasticity_dist.data.loader import ShardLoader, iter_eval_batches
from plasticity_dist.fileio import atomic_write_json
from plasticity_dist.launch import build_accelerator, gradient_accumulation_steps, init_world_env
from plasticity_dist.logging import get_logger
from plasticity_dist.lr_schedule import learning_rate
from plasticity_dist.model import GPT
from plasticity_dist.presets import get_preset
from plasticity_dist.run_layout import RunLayout
from plasticity_dist.steps import StepRunner

log = get_logger()


def probe_config_hash(config: ExperimentConfig) -> str:
    """Hash of everything that changes a probe's numbers (not where or how it is scheduled)."""
    probe = dataclasses.asdict(config.probe)
    for scheduling_key in ("executor", "max_concurrent", "retries", "baseline", "local_cpus", "local_gpus", "slurm"):
        probe.pop(scheduling_key)
    data = config.data
    payload = {
        "probe": probe, "seq_len": data.seq_len, "global_batch_size": data.global_batch_size, "seed": data.seed,
        "optimizer": dataclasses.asdict(config.optimizer), "model": config.model.preset,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def eval_steps(num_steps: int, points: int, spacing: str = "linear") -> list[int]:
    """`points` steps from 0 to `num_steps` inclusive, evenly spaced (`linear`) or step 0 and then evenly
    spaced in log from step 1 (`log`); fewer when rounding makes some coincide."""
    if spacing == "linear":
        grid = np.linspace(0, num_steps, points)
    elif spacing == "log":
        grid = np.concatenate([[0], np.geomspace(1, num_steps, points - 1)])
    else:
        raise ValueError(f"eval spacing must be linear or log, got {spacing!r}")
    return sorted({int(round(x)) for x in grid})


def existing_result(result_path: Path, config_hash: str, force: bool) -> dict[str, Any] | None:
    """A result already there for the same probe config; refuses one made under another config."""
    if not result_path.is_file() or force:
        return None
    result = json.loads(result_path.read_text())
    if result.get("config_hash") != config_hash:
        raise ValueError(
            f"{result_path} was made with probe config {result.get('config_hash')}, not {config_hash}; "
            "pass --force to replace it"
        )
    return result


def run_probe(checkpoint: str | Path, config_path: str | Path | None = None, force: bool = False) -> dict[str, Any]:
    """Run the probe of `checkpoint` (or return the existing result) and return the result record."""
    checkpoint = Path(checkpoint)
    trainer_state = read_trainer_state(checkpoint)
    layout = RunLayout.of_checkpoint(checkpoint)
    config = load_config(config_path or layout.config)
    config_hash = probe_config_hash(config)
    result_path = layout.probe_result(checkpoint.name)
    done = existing_result(result_path, config_hash, force)
    if done is not None:
        log.info(f"probe of {checkpoint.name} already done with this config: {result_path}")
        return done

    started = time.time()
    world = init_world_env()
    accelerator = build_accelerator(config, world)
    probe_dir = dataset_path(config.data.root, config.probe.dataset)
    data = config.data
    loader = ShardLoader(
        [probe_dir], seq_len=data.seq_len, micro_batch_size=data.micro_batch_size,
        global_batch_size=data.global_batch_size, token_budget=config.probe.tokens, rank=world.rank,
        world_size=world.world_size, seed=data.seed, task=0, num_workers=data.num_workers,
        tokenizer=trainer_state["tokenizer"],
    )
    model = GPT(get_preset(config.model.preset).gpt_config(loader.vocab_size, data.seq_len))
    model.load_state_dict(load_consolidated_weights(checkpoint, list(model.state_dict())))
    steps = StepRunner(accelerator, model, config, gradient_accumulation_steps(config, world.world_size))
    optimizer = dataclasses.replace(config.optimizer, lr=config.probe.lr, schedule="constant")

    def validation_loss() -> float:
        return steps.evaluate(iter_eval_batches(
            Path(probe_dir) / "val", seq_len=data.seq_len, batch_size=data.micro_batch_size,
            max_tokens=config.probe.eval_tokens,
        ))

    tokens_per_step = data.global_batch_size * data.seq_len
    points = eval_steps(loader.num_steps, config.probe.eval_points, config.probe.eval_spacing)
    curve_tokens, curve_losses = [0], [validation_loss()]
    batches = iter(loader)
    for step in range(loader.num_steps):
        steps.train_step(batches, learning_rate(optimizer, step, step, loader.num_steps))
        if step + 1 in points:
            curve_tokens.append((step + 1) * tokens_per_step)
            curve_losses.append(validation_loss())
    result = {
        "checkpoint": checkpoint.name,
        "cycle": trainer_state["probe_cycle"],
        "tasks_trained": trainer_state["task_index"],
        "tokens": trainer_state["tokens_seen"],
        "eval_tokens": curve_tokens,
        "val_losses": curve_losses,
        "auc": curve_auc(curve_tokens, curve_losses),
        "config_hash": config_hash,
        "probe_dataset": probe_dir,
        "world_size": world.world_size,
        "started_at": started,
        "finished_at": time.time(),
        "seconds": time.time() - started,
    }
    if accelerator.is_main_process:
        result_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(result_path, result)
        log.info(f"probe of {checkpoint.name}: AUC {result['auc']:.4f} → {result_path}")
    accelerator.wait_for_everyone()
    return result
