"""Typed experiment configuration: one dataclass per section, with defaults, bounds and cross-field checks.

Every field is typed; a field's `metadata` may name its allowed `choices` or a `min` value, which loading
(config_files.py) checks with types and unknown keys, raising `ConfigError` naming the key; a section's
`check()` checks what spans its fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from plasticity_dist.model.presets import PRESETS_BY_NAME
from plasticity_dist.study.batch_plan import BatchPlan
from plasticity_dist.study.errors import ConfigError
from plasticity_dist.study.fields import at_least, choices
from plasticity_dist.study.mitigation_sections import MitigationsSection

STUDY_LANGUAGES = ("en", "zh", "fr", "ja", "es", "de", "pt", "ru")
PROBE_LANGUAGE = "vi"
STUDY_TASK_TOKENS = 5_000_000_000  # the study's tasks, and its probes, are of this many tokens


@dataclass
class ModelSection:
    preset: str = field(default="100K", metadata=choices(*PRESETS_BY_NAME))
    # null: on when the run has a CUDA GPU (engine/gpu.py); true on a CPU is refused where it cannot work
    compile: bool | None = None  # torch.compile of the model, through DeepSpeed's engine.compile()
    flash_attention: bool | None = None  # only the flash or cuDNN SDPA kernels, checked at start for our shapes
    activation_checkpointing: bool = False  # recompute each block in backward: less memory, ~1/3 more compute
    init_from: str = ""  # a checkpoint whose consolidated weights start the run (only read); "": random init


@dataclass
class DataSection:
    root: str = "data"  # folder holding one shard dataset per task name (relative paths resolve here)
    seq_len: int = field(default=256, metadata=at_least(1))
    micro_batch_size: int = field(default=8, metadata=at_least(1))
    global_batch_size: int = field(default=8, metadata=at_least(1))  # sequences per optimizer step
    num_workers: int = field(default=1, metadata=at_least(0))
    shuffle_window_blocks: int = field(default=1, metadata=at_least(1))
    val_tokens: int = field(default=1_000_000, metadata=at_least(1))  # per task-end evaluation
    seed: int = 0

    def check(self) -> None:
        self.batch_plan()  # the world-size independent part of the check, here where the value enters

    def batch_plan(self, world_size: int = 1) -> BatchPlan:
        """How one optimizer step of this data section is cut into micro-batches on `world_size` ranks."""
        return BatchPlan(self.seq_len, self.micro_batch_size, self.global_batch_size, world_size)


@dataclass
class TaskSpec:
    name: str
    dataset: str = ""  # shard dataset folder; defaults to <data.root>/<name>
    tokens: int | None = field(default=None, metadata=at_least(1))  # defaults to curriculum.task_tokens
    # seed of a permutation of the token ids applied to this task's data and validation split (data/permutation.py);
    # null: none. The control problem sets it per task; a control run's probe runs carry the probe's
    permutation: int | None = field(default=None, metadata=at_least(0))


@dataclass
class ControlSection:
    """The control problem (`curriculum.problem=control`): `curriculum.cycles` x `tasks_per_cycle` tasks, each
    the one dataset of `curriculum.tasks` under a fresh permutation of the token ids, a probe after every cycle on
    the probe language under a permutation no task uses. The dataset is the fixed chunk: a task of
    `curriculum.task_tokens` trains task_tokens / (dataset tokens) epochs over it."""

    permutation_seed: int = field(default=0, metadata=at_least(0))  # seeds every task's and the probe's permutation
    tasks_per_cycle: int = field(default=5, metadata=at_least(1))  # permuted tasks between two probes
    # a probe is the mean of this many probes of the checkpoint, each under a probe permutation of its own: one
    # permutation's AUC varies by a few % with how it meets the checkpoint's last mapping, which the mean averages
    probe_permutations: int = field(default=1, metadata=at_least(1))


@dataclass
class CurriculumSection:
    problem: str = field(default="continual", metadata=choices("continual", "stationary", "control"))
    tasks: list[TaskSpec] = field(default_factory=lambda: [TaskSpec(lang) for lang in STUDY_LANGUAGES])
    task_tokens: int = field(default=STUDY_TASK_TOKENS, metadata=at_least(1))
    cycles: int = field(default=1, metadata=at_least(1))
    # stationary problem: one stream mixing every task's data
    mix_weights: list[float] | None = None
    total_tokens: int | None = field(default=None, metadata=at_least(1))
    probe_every_tokens: int | None = field(default=None, metadata=at_least(1))
    control: ControlSection = field(default_factory=ControlSection)  # read only by the control problem
    # every task after the first starts again from the run's initial weights with a fresh optimizer: independent
    # trainings of one starting point, one per task, in one process (a probe over several probe permutations)
    restart_each_task: bool = False

    def check(self) -> None:
        if not self.tasks:
            raise ConfigError("curriculum.tasks is empty; list at least one task")
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"curriculum.tasks has duplicate names: {names}")
        if self.problem == "control" and len(self.tasks) != 1:
            raise ConfigError(f"curriculum.problem=control permutes one dataset, but curriculum.tasks names "
                              f"{len(self.tasks)}: {names}; list the one text to permute")
        if self.problem == "control" and self.tasks[0].permutation is not None:
            raise ConfigError(f"curriculum.tasks[0].permutation={self.tasks[0].permutation}: the control problem "
                              "draws every task's permutation from curriculum.control.permutation_seed; leave it unset")
        if self.mix_weights is not None:
            if len(self.mix_weights) != len(self.tasks) or min(self.mix_weights) < 0 or sum(self.mix_weights) <= 0:
                raise ConfigError(
                    f"curriculum.mix_weights={self.mix_weights} must hold one non-negative weight per task "
                    f"({len(self.tasks)}) with a positive sum"
                )


@dataclass
class OptimizerSection:
    lr: float = field(default=6e-4, metadata=at_least(0.0))
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = field(default=1e-8, metadata=at_least(0.0))
    fused: bool | None = None  # torch's fused AdamW kernel; null: on CUDA
    weight_decay: float = field(default=0.1, metadata=at_least(0.0))
    grad_clip: float = field(default=1.0, metadata=at_least(0.0))  # 0 disables clipping
    schedule: str = field(default="constant", metadata=choices("constant", "rewarm_cosine"))
    warmup_steps: int = field(default=100, metadata=at_least(0))
    min_lr_ratio: float = field(default=0.1, metadata=at_least(0.0))

    def check(self) -> None:
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ConfigError(f"optimizer.betas={self.betas} must be two values in [0, 1)")
        if self.min_lr_ratio > 1.0:
            raise ConfigError(f"optimizer.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")


@dataclass
class CheckpointSection:
    every_steps: int = field(default=0, metadata=at_least(0))  # 0: only at task ends
    keep_last: int = field(default=2, metadata=at_least(1))  # cycle-end checkpoints are always kept
    # a kept checkpoint whose probe result exists, once older than the last keep_last, is reduced to its
    # consolidated weights (safetensors, in slim_dtype) and trainer_state.json: no optimizer state to resume from
    slim_after_probe: bool = True
    slim_dtype: str = field(default="fp32", metadata=choices("fp32", "bf16"))


@dataclass
class SlurmProbeSection:
    """Where the `slurm` probe executor sends `slurm/probe.sh` (empty: the cluster's default)."""

    partition: str = ""
    account: str = ""
    time: str = "04:00:00"
    nodes: int = field(default=1, metadata=at_least(1))
    gpus_per_node: int = field(default=0, metadata=at_least(0))  # the study configs ask for what a probe needs
    cpus_per_task: int = field(default=0, metadata=at_least(0))  # for all of a node's ranks and loader workers
    extra_args: list[str] = field(default_factory=list)  # more sbatch options, e.g. ["--qos=low"]


# Probe settings that say where and how a probe is scheduled, not what it computes.
PROBE_SCHEDULING_KEYS = ("executor", "max_concurrent", "retries", "baseline", "local_cpus", "local_gpus", "slurm",
                         "checkpoint_every_steps", "every_task_cycles")


@dataclass
class ProbeSection:
    enabled: bool = True
    dataset: str = PROBE_LANGUAGE  # shard dataset folder, relative to data.root
    tokens: int = field(default=STUDY_TASK_TOKENS, metadata=at_least(1))
    eval_points: int = field(default=11, metadata=at_least(2))  # step 0 and the last step included
    eval_spacing: str = field(default="linear", metadata=choices("linear", "log"))  # linear: the study's
    eval_tokens: int = field(default=1_000_000, metadata=at_least(1))
    # the AUC from this eval point on (0: the whole curve, the study's); the control problem starts later, where
    # the first points show how confidently the checkpoint predicts its last task's mapping, not how fast it learns
    auc_from_point: int = field(default=0, metadata=at_least(0))
    lr: float | None = field(default=None, metadata=at_least(0.0))  # None: the run's optimizer.lr
    executor: str = field(default="local", metadata=choices("inline", "local", "slurm"))
    max_concurrent: int = field(default=1, metadata=at_least(1))
    retries: int = field(default=2, metadata=at_least(0))
    checkpoint_every_steps: int = field(default=1000, metadata=at_least(0))  # a probe run's checkpoints; 0: none
    baseline: bool = True  # also probe the untrained initial weights (cycle 0)
    # continual: also probe after every task of the first N cycles (an early onset falls between cycle ends);
    # a mid-cycle probe carries its task's cycle. 0: after every cycle end only
    every_task_cycles: int = field(default=0, metadata=at_least(0))
    local_cpus: list[int] = field(default_factory=list)  # `local` executor: pin probes to these CPUs
    local_gpus: str = ""  # `local` executor: CUDA_VISIBLE_DEVICES for probes, e.g. "7"
    slurm: SlurmProbeSection = field(default_factory=SlurmProbeSection)


@dataclass
class DiagnosticsSection:
    """Plasticity diagnostics on a fixed held-out batch, every `every_steps` and at every task end."""

    enabled: bool = True
    every_steps: int = field(default=100, metadata=at_least(1))
    batch_size: int = field(default=4, metadata=at_least(1))  # sequences, from the tasks' validation splits
    dormant_threshold: float = field(default=0.1, metadata=at_least(0.0))  # ReDo's tau, also for gradient dormancy
    srank_delta: float = field(default=0.01, metadata=at_least(0.0))
    saturation_share: float = 0.99  # a unit is saturated when this share of inputs sits in GELU's flat region
    duplicate_threshold: float = 0.95  # a unit is a duplicate when it correlates above this with another
    # the top Hessian eigenvalue at task ends: curvature_iterations Hessian-vector products (each ~2 backward
    # passes) on a copy of the whole model in the main process while the other ranks wait; off for that cost
    curvature: bool = False
    curvature_iterations: int = field(default=20, metadata=at_least(1))

    def check(self) -> None:
        if self.srank_delta >= 1.0:
            raise ConfigError(f"diagnostics.srank_delta={self.srank_delta} must be in [0, 1)")
        for key in ("saturation_share", "duplicate_threshold"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ConfigError(f"diagnostics.{key}={getattr(self, key)} must be in (0, 1]")


@dataclass
class ForgettingSection:
    """At every task end, the validation loss of every training language (forgetting and transfer) and,
    zero-shot, of the probe language: `val_losses` and `probe_val_loss` in the `task_end` record."""

    enabled: bool = True
    val_tokens: int = field(default=262_144, metadata=at_least(1))  # per language and task end


@dataclass
class EarlyWarningSection:
    """Warn during training when learning stagnates (a `warning` record in metrics.jsonl and a log line).

    A task's loss improvement is (first - last) / first of its logged training losses, averaged over the
    first and last `window` records; it warns below `loss_improvement_ratio` times the same task's
    improvement in its first cycle. A probe after the reference (the end of cycle 1) warns when its AUC is more
    than `auc_increase_pct` above the reference's.
    """

    enabled: bool = True
    loss_improvement_ratio: float = field(default=0.5, metadata=at_least(0.0))
    auc_increase_pct: float = field(default=5.0, metadata=at_least(0.0))
    window: int = field(default=5, metadata=at_least(1))


@dataclass
class EvaluationSection:
    """Validation loss during every task on the task's validation splits (`eval` records in metrics.jsonl):
    at `points` steps from step 0 to the task's last step, spaced by `spacing` (a probe's curve), and every
    `every_steps` steps; 0 turns either off. `tokens` per evaluation."""

    points: int = field(default=0, metadata=at_least(0))
    spacing: str = field(default="linear", metadata=choices("linear", "log"))
    every_steps: int = field(default=0, metadata=at_least(0))
    tokens: int = field(default=1_000_000, metadata=at_least(1))

    def check(self) -> None:
        if self.points == 1:
            raise ConfigError("evaluation.points=1: a curve needs step 0 and the last step (2 or more), or 0 for none")


GPU_PEAK_TFLOPS = {"h100": 989.0, "h200": 989.0, "a100": 312.0}  # dense bf16, per GPU: MFU and `plan`


@dataclass
class LaunchSection:
    """`zero_stage` 0 runs DeepSpeed without ZeRO: every rank holds the whole fp32 model and Adam state, which
    steps a tiny model fastest (the control problem's); it runs in fp32 only."""

    zero_stage: int = field(default=1, metadata=choices(0, 1, 2, 3))
    precision: str = field(default="auto", metadata=choices("auto", "bf16", "fp32"))  # auto: bf16 on GPU, but stage 0
    ds_config: str = ""  # defaults to ds_configs/zero<stage>.json
    peak_tflops: float | None = field(default=None, metadata=at_least(0.0))  # per-GPU peak for MFU; null: detected

    def check(self) -> None:
        if self.zero_stage == 0 and self.precision == "bf16":
            raise ConfigError("launch.precision=bf16 needs ZeRO (launch.zero_stage 1, 2 or 3): stage 0 runs in fp32 "
                              "only; set launch.precision=fp32 or auto")


@dataclass
class WandbSection:
    """Weights & Biases, off by default: the main process logs every metrics.jsonl record and the probe results
    to one W&B run per run directory (see train/wandb_sink.py). Without internet: `mode=offline`, `wandb sync` later."""

    enabled: bool = False
    project: str = "plasticity-dist"
    entity: str = ""  # "": W&B's default entity
    group: str = ""  # "": <size>-<problem>[-<mitigations>], so replicate seeds share a group
    name: str = ""  # "": <group>-seed<seed>
    mode: str = field(default="online", metadata=choices("online", "offline"))
    tags: list[str] = field(default_factory=list)


@dataclass
class ExperimentConfig:
    run_dir: str = "runs/default"
    resume: str = "auto"  # auto | never | path to a checkpoint folder
    seed: int = 0
    # runs of this config the study makes, seed = data.seed = 0 .. replicates-1, each in its own run directory
    # (slurm/train_size.sh SEED=i); `plan` counts them all, a run trains one
    replicates: int = field(default=1, metadata=at_least(1))
    log_every: int = field(default=10, metadata=at_least(1))
    # the setting (a dotted key, e.g. optimizer.weight_decay) this run is one value of in a sweep: the report's
    # mitigation comparison sets its values beside the mitigations, one row per value ("": not a sweep)
    sweep: str = ""
    tensorboard: bool = False  # also write metrics as TensorBoard scalars to RUN/tensorboard/
    wandb: WandbSection = field(default_factory=WandbSection)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    curriculum: CurriculumSection = field(default_factory=CurriculumSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    probe: ProbeSection = field(default_factory=ProbeSection)
    launch: LaunchSection = field(default_factory=LaunchSection)
    diagnostics: DiagnosticsSection = field(default_factory=DiagnosticsSection)
    mitigations: MitigationsSection = field(default_factory=MitigationsSection)
    early_warning: EarlyWarningSection = field(default_factory=EarlyWarningSection)
    forgetting: ForgettingSection = field(default_factory=ForgettingSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)

    def check(self) -> None:
        if self.sweep:
            try:
                setting_value(self, self.sweep)
            except ConfigError as error:
                raise ConfigError(f"sweep: {error}") from None
        if self.curriculum.problem == "control" and self.mitigations.replay.enabled:
            raise ConfigError("mitigations.replay replays earlier languages; curriculum.problem=control has one "
                              "dataset under a new permutation per task: set mitigations.replay.enabled=false")
        if self.probe.auc_from_point > self.probe.eval_points - 2:
            raise ConfigError(f"probe.auc_from_point={self.probe.auc_from_point} leaves fewer than 2 of the "
                              f"probe.eval_points={self.probe.eval_points} for the AUC: at most "
                              f"{self.probe.eval_points - 2}")
        if self.curriculum.problem == "stationary" and self.probe.every_task_cycles:
            raise ConfigError(f"probe.every_task_cycles={self.probe.every_task_cycles} probes after the tasks of a "
                              "continual run; a stationary run probes every curriculum.probe_every_tokens: set it to 0")

    def __post_init__(self) -> None:
        """A probe without its own `probe.lr` trains at the run's `optimizer.lr`: filled in here, so the
        written config, the probe job and its config hash all hold the learning rate the probe uses."""
        if self.probe.lr is None:
            self.probe = dataclasses.replace(self.probe, lr=self.optimizer.lr)


def setting_value(config: ExperimentConfig, key: str) -> Any:
    """The value of the dotted `key` (e.g. `optimizer.weight_decay`) of `config`."""
    node: Any = dataclasses.asdict(config)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{key!r} is not a setting of the config")
        node = node[part]
    if isinstance(node, dict):
        raise ConfigError(f"{key!r} is a section of the config, not one setting")
    return node
