"""What a config will cost before it runs: tokens, probes, the published law's onset, compute and disk.

Every figure comes from the part that owns it: parameter and FLOP counts from the model (6N + attention +
the tied output layer), steps from the batch plan, tasks and probe points from the curriculum, the onset
from the published law, dataset sizes from manifests where they exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from plasticity_dist.data.shards import read_manifest, token_dtype
from plasticity_dist.model.presets import get_preset
from plasticity_dist.study.config import GPU_PEAK_TFLOPS, ExperimentConfig
from plasticity_dist.study.curriculum import Task, build_tasks, dataset_path

ASSUMED_MFU = 0.2  # until a study run measures its own (metrics.jsonl's `mfu`)
WEIGHT_BYTES = {"bf16": 2, "fp32": 4, "auto": 2}  # the model states DeepSpeed saves; auto is bf16 on a GPU
OPTIMIZER_BYTES = 12  # per parameter: fp32 master copy and Adam's two moments
ONSET_MARGIN = 1.5  # a run observes the onset when it trains 1.5x the predicted onset, then PROBES_AFTER_ONSET cycles
EARLY_ONSET_CYCLES = 2  # an onset predicted before this many cycles falls among too few cycle-end probes


def cycles_to_observe_onset(onset_tasks: float, tasks_per_cycle: int) -> int:
    """Cycles a continual run needs to observe an onset predicted after `onset_tasks` tasks: 1.5x the
    prediction, then the probes the onset rule needs after an onset, and at least the rule's minimum probes."""
    from plasticity_dist.analysis.onset import MIN_PROBES, PROBES_AFTER_ONSET

    return max(math.ceil(ONSET_MARGIN * onset_tasks / tasks_per_cycle) + PROBES_AFTER_ONSET, MIN_PROBES)


def per_task_probe_cycles(onset_tasks: float, tasks_per_cycle: int) -> int:
    """Cycles whose every task a continual run must probe to place an onset predicted after `onset_tasks` tasks:
    none when it falls after EARLY_ONSET_CYCLES cycles, else up to 1.5x the prediction, at least
    EARLY_ONSET_CYCLES (the cycle-end probes alone would put it at or before their first or second)."""
    if onset_tasks >= EARLY_ONSET_CYCLES * tasks_per_cycle:
        return 0
    return max(math.ceil(ONSET_MARGIN * onset_tasks / tasks_per_cycle), EARLY_ONSET_CYCLES)


def checkpoint_bytes(total_params: int, precision: str) -> int:
    """One full checkpoint: the model states at the run's precision plus the optimizer's fp32 state."""
    return total_params * (WEIGHT_BYTES[precision] + OPTIMIZER_BYTES)


@dataclass(frozen=True)
class StudyPlan:
    config: str
    model: str
    non_embedding_params: int
    total_params: int
    vocab_size: int
    flops_per_token: int
    problem: str
    tasks: int
    cycles: int
    steps: int
    train_tokens: int
    probes: int
    per_task_probe_cycles: int  # the config's probe.every_task_cycles (continual runs)
    per_task_probe_cycles_needed: int | None  # continual runs: for the law's predicted onset
    probe_tokens: int
    probe_compute_share: float
    onset_tasks: float | None  # continual runs: the published law's prediction
    onset_cycles: float | None
    cycles_to_observe_onset: int | None
    observes_onset: bool | None
    gpu: str
    gpus: int
    mfu: float
    train_flops: float
    probe_flops: float
    train_gpu_hours: float
    probe_gpu_hours: float
    replicates: int  # seeds the study runs of this config, each costing the GPU-hours above
    gpu_hours_all_seeds: float  # training and probes of every seed
    train_wall_days: float  # training alone on `gpus` GPUs; probes run beside it on spare nodes
    dataset_bytes: int
    dataset_bytes_from_manifests: bool
    checkpoint_bytes: int
    slim_checkpoint_bytes: int  # in checkpoint.slim_dtype
    kept_checkpoints: int
    kept_bytes: int  # all of them whole
    kept_bytes_slimmed: int  # as the run keeps them: slimmed unless checkpoint.slim_after_probe=false

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _vocab_size(dataset_dirs: list[str]) -> int:
    """The vocabulary of the config's data: its first manifest's, else the study tokenizer's (corpora.yaml)."""
    for folder in dataset_dirs:
        if (Path(folder) / "manifest.json").is_file():
            return read_manifest(folder).vocab_size
    from plasticity_dist.data.sources import tokenizer_sample

    return tokenizer_sample()["vocab_size"]


def _dataset_bytes(stored_tokens: dict[str, int], vocab_size: int) -> tuple[int, bool]:
    """Bytes of every dataset folder (train and val splits): the manifests' shard bytes where every folder has
    one, else the uncompressed token ids (an upper bound: zstd shrinks them)."""
    splits = [folder for dataset in stored_tokens for folder in (Path(dataset), Path(dataset) / "val")]
    if all((folder / "manifest.json").is_file() for folder in splits):
        return sum(shard.bytes for folder in splits for shard in read_manifest(folder).shards), True
    return sum(stored_tokens.values()) * token_dtype(vocab_size).itemsize, False


def _stored_tokens(config: ExperimentConfig, tasks: Sequence[Task], probes: int) -> dict[str, int]:
    """Tokens stored per dataset: its largest task (training re-reads it) and its val split; the probe
    dataset's probe and eval tokens when the run probes."""
    stored: dict[str, int] = {}
    for task in tasks:
        stored[task.datasets[0]] = max(stored.get(task.datasets[0], 0), task.tokens + config.data.val_tokens)
    if probes:
        probe_dataset = dataset_path(config.data.root, config.probe.dataset)
        stored[probe_dataset] = max(stored.get(probe_dataset, 0), config.probe.tokens + config.probe.eval_tokens)
    return stored


def plan_study(config: ExperimentConfig, config_name: str = "", gpus: int = 8, gpu: str = "h100",
               mfu: float = ASSUMED_MFU) -> StudyPlan:
    """The plan of `config` trained on `gpus` GPUs of kind `gpu` at model FLOP utilisation `mfu`."""
    if gpu not in GPU_PEAK_TFLOPS:
        raise ValueError(f"unknown GPU {gpu!r}; known: {', '.join(GPU_PEAK_TFLOPS)}")
    if not 0 < mfu <= 1 or gpus < 1:
        raise ValueError(f"need 0 < mfu <= 1 and gpus >= 1, got mfu={mfu}, gpus={gpus}")
    tasks = build_tasks(config)
    probes = sum(task.probe_after for task in tasks) + int(config.probe.baseline) if config.probe.enabled else 0
    stored_tokens = _stored_tokens(config, tasks, probes)
    vocab_size = _vocab_size(list(stored_tokens))
    with torch.device("meta"):  # counts only: no memory for the weights
        model = get_preset(config.model.preset).build(vocab_size, config.data.seq_len)
    non_embedding = model.num_params(non_embedding=True)
    total = model.num_params(non_embedding=False)
    flops_per_token = model.flops_per_token(output_layer=True)

    batch = config.data.batch_plan()
    steps = sum(batch.steps_for(task.tokens) for task in tasks)
    train_tokens = steps * batch.tokens_per_step
    probe_tokens = probes * config.probe.tokens
    train_flops, probe_flops = float(train_tokens * flops_per_token), float(probe_tokens * flops_per_token)
    gpu_flops_per_hour = GPU_PEAK_TFLOPS[gpu] * 1e12 * mfu * 3600

    onset_tasks = onset_cycles = needed = observes = per_task_needed = None
    if config.curriculum.problem == "continual":
        from plasticity_dist.analysis.scaling import predict_onset

        tasks_per_cycle = len(config.curriculum.tasks)
        onset_tasks = predict_onset(non_embedding)
        onset_cycles = onset_tasks / tasks_per_cycle
        needed = cycles_to_observe_onset(onset_tasks, tasks_per_cycle)
        observes = config.curriculum.cycles >= needed
        per_task_needed = per_task_probe_cycles(onset_tasks, tasks_per_cycle)

    full, slim = checkpoint_bytes(total, config.launch.precision), total * WEIGHT_BYTES[config.checkpoint.slim_dtype]
    # At the end of a run: every probed checkpoint (cycle ends, the tasks of probe.every_task_cycles, the initial
    # weights) and the keep_last - 1 newest before the last; slimming (checkpoint.slim_after_probe) leaves the
    # last keep_last whole.
    kept = probes + config.checkpoint.keep_last - 1 if probes else config.checkpoint.keep_last
    kept_whole = min(config.checkpoint.keep_last, kept) if config.checkpoint.slim_after_probe else kept
    dataset_bytes, from_manifests = _dataset_bytes(stored_tokens, vocab_size)
    return StudyPlan(
        config=config_name, model=config.model.preset, non_embedding_params=non_embedding, total_params=total,
        vocab_size=vocab_size, flops_per_token=flops_per_token, problem=config.curriculum.problem,
        tasks=len(tasks), cycles=tasks[-1].cycle, steps=steps, train_tokens=train_tokens, probes=probes,
        per_task_probe_cycles=min(config.probe.every_task_cycles, tasks[-1].cycle) if probes else 0,
        per_task_probe_cycles_needed=per_task_needed,
        probe_tokens=probe_tokens, probe_compute_share=probe_flops / (train_flops + probe_flops),
        onset_tasks=onset_tasks, onset_cycles=onset_cycles, cycles_to_observe_onset=needed, observes_onset=observes,
        gpu=gpu, gpus=gpus, mfu=mfu, train_flops=train_flops, probe_flops=probe_flops,
        train_gpu_hours=train_flops / gpu_flops_per_hour, probe_gpu_hours=probe_flops / gpu_flops_per_hour,
        replicates=config.replicates,
        gpu_hours_all_seeds=config.replicates * (train_flops + probe_flops) / gpu_flops_per_hour,
        train_wall_days=train_flops / gpu_flops_per_hour / gpus / 24,
        dataset_bytes=dataset_bytes, dataset_bytes_from_manifests=from_manifests,
        checkpoint_bytes=full, slim_checkpoint_bytes=slim, kept_checkpoints=kept, kept_bytes=kept * full,
        kept_bytes_slimmed=kept_whole * full + (kept - kept_whole) * slim,
    )
