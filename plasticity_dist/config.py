"""Typed experiment configuration: YAML files plus `key.sub=value` overrides, validated before any work.

Every field is typed; a field's `metadata` may name its allowed `choices` or a `min` value. Loading
checks types, choices, bounds and unknown keys, and raises `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plasticity_dist.presets import PRESETS_BY_NAME

STUDY_LANGUAGES = ("en", "zh", "fr", "ja", "es", "de", "pt", "ru")
PROBE_LANGUAGE = "vi"


class ConfigError(ValueError):
    """A bad config value; the message names the key and what is allowed."""


def _choices(*allowed: Any) -> dict[str, Any]:
    return {"choices": allowed}


def _at_least(minimum: float) -> dict[str, Any]:
    return {"min": minimum}


@dataclass
class ModelSection:
    preset: str = field(default="100K", metadata=_choices(*PRESETS_BY_NAME))
    # null: on when the run has a CUDA GPU (gpu.py); true on a CPU is refused where it cannot work
    compile: bool | None = None  # torch.compile of the model, through DeepSpeed's engine.compile()
    flash_attention: bool | None = None  # only the flash or cuDNN SDPA kernels, checked at start for our shapes
    activation_checkpointing: bool = False  # recompute each block in backward: less memory, ~1/3 more compute
    init_from: str = ""  # a checkpoint whose consolidated weights start the run (only read); "": random init


@dataclass
class DataSection:
    root: str = "data"  # folder holding one shard dataset per task name (relative paths resolve here)
    seq_len: int = field(default=256, metadata=_at_least(1))
    micro_batch_size: int = field(default=8, metadata=_at_least(1))
    global_batch_size: int = field(default=8, metadata=_at_least(1))  # sequences per optimizer step
    num_workers: int = field(default=1, metadata=_at_least(0))
    shuffle_window_blocks: int = field(default=1, metadata=_at_least(1))
    val_tokens: int = field(default=1_000_000, metadata=_at_least(1))  # per task-end evaluation
    seed: int = 0

    def check(self) -> None:
        from plasticity_dist.batch_plan import BatchPlan  # it imports this module

        BatchPlan.of(self)  # the world-size independent part of the check, here where the value enters


@dataclass
class TaskSpec:
    name: str
    dataset: str = ""  # shard dataset folder; defaults to <data.root>/<name>
    tokens: int | None = field(default=None, metadata=_at_least(1))  # defaults to curriculum.task_tokens
    # seed of a permutation of the token ids applied to this task's data and validation split (data/permutation.py);
    # null: none. The control problem sets it per task; a control run's probe runs carry the probe's
    permutation: int | None = field(default=None, metadata=_at_least(0))


@dataclass
class ControlSection:
    """The control problem (`curriculum.problem=control`): `curriculum.cycles` x `tasks_per_cycle` tasks, each
    the one dataset of `curriculum.tasks` under a fresh permutation of the token ids, a probe after every cycle on
    the probe language under a permutation no task uses. The dataset is the fixed chunk: a task of
    `curriculum.task_tokens` trains task_tokens / (dataset tokens) epochs over it."""

    permutation_seed: int = field(default=0, metadata=_at_least(0))  # seeds every task's and the probe's permutation
    tasks_per_cycle: int = field(default=5, metadata=_at_least(1))  # permuted tasks between two probes


@dataclass
class CurriculumSection:
    problem: str = field(default="continual", metadata=_choices("continual", "stationary", "control"))
    tasks: list[TaskSpec] = field(default_factory=lambda: [TaskSpec(lang) for lang in STUDY_LANGUAGES])
    task_tokens: int = field(default=5_000_000_000, metadata=_at_least(1))
    cycles: int = field(default=1, metadata=_at_least(1))
    # stationary problem: one stream mixing every task's data
    mix_weights: list[float] | None = None
    total_tokens: int | None = field(default=None, metadata=_at_least(1))
    probe_every_tokens: int | None = field(default=None, metadata=_at_least(1))
    control: ControlSection = field(default_factory=ControlSection)  # read only by the control problem

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
    lr: float = field(default=6e-4, metadata=_at_least(0.0))
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = field(default=1e-8, metadata=_at_least(0.0))
    fused: bool | None = None  # torch's fused AdamW kernel; null: on CUDA
    weight_decay: float = field(default=0.1, metadata=_at_least(0.0))
    grad_clip: float = field(default=1.0, metadata=_at_least(0.0))  # 0 disables clipping
    schedule: str = field(default="constant", metadata=_choices("constant", "rewarm_cosine"))
    warmup_steps: int = field(default=100, metadata=_at_least(0))
    min_lr_ratio: float = field(default=0.1, metadata=_at_least(0.0))

    def check(self) -> None:
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ConfigError(f"optimizer.betas={self.betas} must be two values in [0, 1)")
        if self.min_lr_ratio > 1.0:
            raise ConfigError(f"optimizer.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")


@dataclass
class CheckpointSection:
    every_steps: int = field(default=0, metadata=_at_least(0))  # 0: only at task ends
    keep_last: int = field(default=2, metadata=_at_least(1))  # cycle-end checkpoints are always kept
    # a kept checkpoint whose probe result exists, once older than the last keep_last, is reduced to its
    # consolidated weights (safetensors, in slim_dtype) and trainer_state.json: no optimizer state to resume from
    slim_after_probe: bool = True
    slim_dtype: str = field(default="fp32", metadata=_choices("fp32", "bf16"))


@dataclass
class SlurmProbeSection:
    """Where the `slurm` probe executor sends `slurm/probe.sh` (empty: the cluster's default)."""

    partition: str = ""
    account: str = ""
    time: str = "04:00:00"
    nodes: int = field(default=1, metadata=_at_least(1))
    gpus_per_node: int = field(default=0, metadata=_at_least(0))  # the study configs ask for what a probe needs
    cpus_per_task: int = field(default=0, metadata=_at_least(0))  # for all of a node's ranks and loader workers
    extra_args: list[str] = field(default_factory=list)  # more sbatch options, e.g. ["--qos=low"]


@dataclass
class ProbeSection:
    enabled: bool = True
    dataset: str = PROBE_LANGUAGE  # shard dataset folder, relative to data.root
    tokens: int = field(default=5_000_000_000, metadata=_at_least(1))
    eval_points: int = field(default=11, metadata=_at_least(2))  # step 0 and the last step included
    eval_spacing: str = field(default="linear", metadata=_choices("linear", "log"))  # linear: the study's
    eval_tokens: int = field(default=1_000_000, metadata=_at_least(1))
    lr: float | None = field(default=None, metadata=_at_least(0.0))  # None: the run's optimizer.lr
    executor: str = field(default="local", metadata=_choices("inline", "local", "slurm"))
    max_concurrent: int = field(default=1, metadata=_at_least(1))
    retries: int = field(default=2, metadata=_at_least(0))
    checkpoint_every_steps: int = field(default=1000, metadata=_at_least(0))  # a probe run's checkpoints; 0: none
    baseline: bool = True  # also probe the untrained initial weights (cycle 0)
    # continual: also probe after every task of the first N cycles (an early onset falls between cycle ends);
    # a mid-cycle probe carries its task's cycle. 0: after every cycle end only
    every_task_cycles: int = field(default=0, metadata=_at_least(0))
    local_cpus: list[int] = field(default_factory=list)  # `local` executor: pin probes to these CPUs
    local_gpus: str = ""  # `local` executor: CUDA_VISIBLE_DEVICES for probes, e.g. "7"
    slurm: SlurmProbeSection = field(default_factory=SlurmProbeSection)


@dataclass
class DiagnosticsSection:
    """Plasticity diagnostics on a fixed held-out batch, every `every_steps` and at every task end."""

    enabled: bool = True
    every_steps: int = field(default=100, metadata=_at_least(1))
    batch_size: int = field(default=4, metadata=_at_least(1))  # sequences, from the tasks' validation splits
    dormant_threshold: float = field(default=0.1, metadata=_at_least(0.0))  # ReDo's tau, also for gradient dormancy
    srank_delta: float = field(default=0.01, metadata=_at_least(0.0))
    saturation_share: float = 0.99  # a unit is saturated when this share of inputs sits in GELU's flat region
    duplicate_threshold: float = 0.95  # a unit is a duplicate when it correlates above this with another
    # the top Hessian eigenvalue at task ends: curvature_iterations Hessian-vector products (each ~2 backward
    # passes) on a copy of the whole model in the main process while the other ranks wait; off for that cost
    curvature: bool = False
    curvature_iterations: int = field(default=20, metadata=_at_least(1))

    def check(self) -> None:
        if self.srank_delta >= 1.0:
            raise ConfigError(f"diagnostics.srank_delta={self.srank_delta} must be in [0, 1)")
        for key in ("saturation_share", "duplicate_threshold"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ConfigError(f"diagnostics.{key}={getattr(self, key)} must be in (0, 1]")


@dataclass
class ShrinkPerturbSection:
    """At every task boundary: theta <- shrink * theta + noise_std * eps (Ash & Adams 2020)."""

    enabled: bool = False
    shrink: float = field(default=0.4, metadata=_at_least(0.0))
    noise_std: float = field(default=1e-3, metadata=_at_least(0.0))

    def check(self) -> None:
        if self.shrink > 1.0:
            raise ConfigError(f"mitigations.shrink_perturb.shrink={self.shrink} must be in [0, 1]")


@dataclass
class L2InitSection:
    """`weight * ||theta - theta_0||^2` added to the loss ("L2 Init", Kumar et al. 2023)."""

    enabled: bool = False
    weight: float = field(default=1e-4, metadata=_at_least(0.0))


@dataclass
class ReDoSection:
    """Every `every_steps`, reset the MLP units whose ReDo score is at most `threshold` (Sokar et al. 2023)."""

    enabled: bool = False
    every_steps: int = field(default=1000, metadata=_at_least(1))
    threshold: float = field(default=0.1, metadata=_at_least(0.0))


@dataclass
class ContinualBackpropSection:
    """Continual backprop (Dohare et al. 2024): replace mature, least useful MLP units as training goes."""

    enabled: bool = False
    replacement_rate: float = field(default=1e-4, metadata=_at_least(0.0))  # rho: units per eligible unit per step
    maturity: int = field(default=100, metadata=_at_least(0))  # steps a unit is protected after (re)initialisation
    decay: float = field(default=0.99, metadata=_at_least(0.0))  # of the running contribution utility

    def check(self) -> None:
        if self.decay >= 1.0 or self.replacement_rate > 1.0:
            raise ConfigError(f"mitigations.cbp: decay={self.decay} must be in [0, 1) and replacement_rate="
                              f"{self.replacement_rate} in [0, 1]")


@dataclass
class NormalizeProjectSection:
    """After every optimizer step, each linear weight of the blocks is scaled back to its initial norm
    ("Normalize-and-Project", Lyle et al. 2024; the blocks' LayerNorms do the normalising)."""

    enabled: bool = False


@dataclass
class SpectralRegSection:
    """`weight * sum (sigma_1(W) - 1)^2` over the blocks' linear weights added to the loss (Lewandowski et al.),
    sigma_1 by `power_iterations` steps of power iteration from a fixed start, so a resumed run computes the same."""

    enabled: bool = False
    weight: float = field(default=1e-4, metadata=_at_least(0.0))
    power_iterations: int = field(default=20, metadata=_at_least(1))


@dataclass
class SelfNormalizedResetsSection:
    """Self-Normalized Resets (Farias & Jozefiak, ICLR 2025): an MLP unit is reset when it has not fired
    (GELU input > 0) for so many tokens that, at its running firing rate, the chance of so long a gap is
    below `threshold`."""

    enabled: bool = False
    threshold: float = field(default=1e-4, metadata=_at_least(0.0))
    decay: float = field(default=0.99, metadata=_at_least(0.0))  # per step, of the running firing rate

    def check(self) -> None:
        if not 0.0 < self.threshold < 1.0 or self.decay >= 1.0:
            raise ConfigError(f"mitigations.snr: threshold={self.threshold} must be in (0, 1) and decay="
                              f"{self.decay} in [0, 1)")


@dataclass
class HareTortoiseSection:
    """Hare & Tortoise (Lee et al. 2024): the tortoise, an exponential moving average of the weights with `decay`
    per step, follows the network trained (the hare); every `every_steps` steps the hare is reset to it."""

    enabled: bool = False
    decay: float = field(default=0.999, metadata=_at_least(0.0))
    every_steps: int = field(default=1000, metadata=_at_least(1))

    def check(self) -> None:
        if self.decay >= 1.0:
            raise ConfigError(f"mitigations.hare_tortoise.decay={self.decay} must be in [0, 1)")


@dataclass
class ReplaySection:
    """Each continual task draws `fraction` of its rows, in equal shares, from the languages trained before it
    (by the loader's seeded weighted mix), the rest from its own language (Ibrahim et al. 2024)."""

    enabled: bool = False
    fraction: float = field(default=0.05, metadata=_at_least(0.0))

    def check(self) -> None:
        if self.fraction >= 1.0:
            raise ConfigError(f"mitigations.replay.fraction={self.fraction} must be in [0, 1): the share of a "
                              "task's rows replayed from earlier languages")


@dataclass
class MitigationsSection:
    """Remedies for plasticity loss, all off by default. LR re-warming is `optimizer.schedule=rewarm_cosine`."""

    shrink_perturb: ShrinkPerturbSection = field(default_factory=ShrinkPerturbSection)
    l2_init: L2InitSection = field(default_factory=L2InitSection)
    redo: ReDoSection = field(default_factory=ReDoSection)
    cbp: ContinualBackpropSection = field(default_factory=ContinualBackpropSection)
    nap: NormalizeProjectSection = field(default_factory=NormalizeProjectSection)
    spectral_reg: SpectralRegSection = field(default_factory=SpectralRegSection)
    snr: SelfNormalizedResetsSection = field(default_factory=SelfNormalizedResetsSection)
    hare_tortoise: HareTortoiseSection = field(default_factory=HareTortoiseSection)
    replay: ReplaySection = field(default_factory=ReplaySection)


@dataclass
class ForgettingSection:
    """At every task end, the validation loss of every training language (forgetting and transfer) and,
    zero-shot, of the probe language: `val_losses` and `probe_val_loss` in the `task_end` record."""

    enabled: bool = True
    val_tokens: int = field(default=262_144, metadata=_at_least(1))  # per language and task end


@dataclass
class EarlyWarningSection:
    """Warn during training when learning stagnates (a `warning` record in metrics.jsonl and a log line).

    A task's loss improvement is (first - last) / first of its logged training losses, averaged over the
    first and last `window` records; it warns below `loss_improvement_ratio` times the same task's
    improvement in its first cycle. A probe after the reference (the end of cycle 1) warns when its AUC is more
    than `auc_increase_pct` above the reference's.
    """

    enabled: bool = True
    loss_improvement_ratio: float = field(default=0.5, metadata=_at_least(0.0))
    auc_increase_pct: float = field(default=5.0, metadata=_at_least(0.0))
    window: int = field(default=5, metadata=_at_least(1))


@dataclass
class EvaluationSection:
    """Validation loss during every task on the task's validation splits (`eval` records in metrics.jsonl):
    at `points` steps from step 0 to the task's last step, spaced by `spacing` (a probe's curve), and every
    `every_steps` steps; 0 turns either off. `tokens` per evaluation."""

    points: int = field(default=0, metadata=_at_least(0))
    spacing: str = field(default="linear", metadata=_choices("linear", "log"))
    every_steps: int = field(default=0, metadata=_at_least(0))
    tokens: int = field(default=1_000_000, metadata=_at_least(1))

    def check(self) -> None:
        if self.points == 1:
            raise ConfigError("evaluation.points=1: a curve needs step 0 and the last step (2 or more), or 0 for none")


GPU_PEAK_TFLOPS = {"h100": 989.0, "h200": 989.0, "a100": 312.0}  # dense bf16, per GPU: MFU and `plan`


@dataclass
class LaunchSection:
    zero_stage: int = field(default=1, metadata=_choices(1, 2, 3))
    precision: str = field(default="auto", metadata=_choices("auto", "bf16", "fp32"))  # auto: bf16 on GPU
    ds_config: str = ""  # defaults to ds_configs/zero<stage>.json
    peak_tflops: float | None = field(default=None, metadata=_at_least(0.0))  # per-GPU peak for MFU; null: detected


@dataclass
class WandbSection:
    """Weights & Biases, off by default: the main process logs every metrics.jsonl record and the probe results
    to one W&B run per run directory (see wandb_sink.py). Without internet: `mode=offline`, `wandb sync` later."""

    enabled: bool = False
    project: str = "plasticity-dist"
    entity: str = ""  # "": W&B's default entity
    group: str = ""  # "": <size>-<problem>[-<mitigations>], so replicate seeds share a group
    name: str = ""  # "": <group>-seed<seed>
    mode: str = field(default="online", metadata=_choices("online", "offline"))
    tags: list[str] = field(default_factory=list)


@dataclass
class ExperimentConfig:
    run_dir: str = "runs/default"
    resume: str = "auto"  # auto | never | path to a checkpoint folder
    seed: int = 0
    # runs of this config the study makes, seed = data.seed = 0 .. replicates-1, each in its own run directory
    # (slurm/train_size.sh SEED=i); `plan` counts them all, a run trains one
    replicates: int = field(default=1, metadata=_at_least(1))
    log_every: int = field(default=10, metadata=_at_least(1))
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
        if self.curriculum.problem == "stationary" and self.probe.every_task_cycles:
            raise ConfigError(f"probe.every_task_cycles={self.probe.every_task_cycles} probes after the tasks of a "
                              "continual run; a stationary run probes every curriculum.probe_every_tokens: set it to 0")

    def __post_init__(self) -> None:
        """A probe without its own `probe.lr` trains at the run's `optimizer.lr`: filled in here, so the
        written config, the probe job and its config hash all hold the learning rate the probe uses."""
        if self.probe.lr is None:
            self.probe = dataclasses.replace(self.probe, lr=self.optimizer.lr)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` and build dataclasses and lists from plain data."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _convert(value, inner, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(tp)
        return [_convert(item, item_type, f"{key}[{i}]") for i, item in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping of {_type_name(tp)} fields, got {value!r}")
        return _build(tp, value, key)
    if tp in (int, float) and not isinstance(value, bool):
        value = _as_number(value, tp, key)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    return value


def _as_number(value: Any, tp: type, key: str) -> Any:
    """Accept `5e9`-style numbers (YAML reads them as strings or floats) for int and float fields."""
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise ConfigError(f"config key {key!r}: expected {tp.__name__}, got {value!r}") from None
    if tp is int and isinstance(number, float) and number.is_integer():
        return int(number)
    if tp is float and isinstance(number, int):
        return float(number)
    return number


def _check_bounds(value: Any, metadata: typing.Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    if "choices" in metadata and value not in metadata["choices"]:
        allowed = ", ".join(str(choice) for choice in metadata["choices"])
        raise ConfigError(f"config key {key!r}: {value!r} is not allowed; allowed: {allowed}")
    if "min" in metadata and value < metadata["min"]:
        raise ConfigError(f"config key {key!r}: {value!r} is below the minimum {metadata['min']}")


def _unknown_key(name: str, allowed: list[str], prefix: str) -> ConfigError:
    """The error for a key `name` that is not a field of the section at `prefix`, naming the nearest field."""
    where = f"{prefix}." if prefix else ""
    near = difflib.get_close_matches(name, allowed, n=1)
    hint = f" did you mean {where}{near[0]}?" if near else ""
    return ConfigError(f"unknown config key {where}{name};{hint} allowed: {', '.join(allowed)}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _unknown_key(str(unknown[0]), list(fields), prefix)
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        values[name] = _convert(value, hints[name], key)
        _check_bounds(values[name], fields[name].metadata, key)
    try:
        section = cls(**values)
    except TypeError as error:
        missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        raise ConfigError(f"config key {prefix!r} lacks required field(s): {', '.join(missing)}") from error
    if hasattr(section, "check"):
        section.check()
    return section


def _parse_override(override: str) -> tuple[list[str], Any]:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    try:
        return key.split("."), yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"override {override!r}: the value is not valid YAML ({problem})") from None


def _apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part!r} is not a section")
    node[path[-1]] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        both_sections = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both_sections else value
    return merged


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as plain data; `inherit: other.yaml` (relative to the file) is merged underneath."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    parent_path = (path.parent / str(parent)).resolve()
    if parent_path in seen:
        raise ConfigError(f"config file {path}: 'inherit' forms a cycle through {parent_path}")
    return _merge(_read_yaml(parent_path, (*seen, parent_path)), data)


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config (or the defaults), apply `key.sub=value` overrides, and validate.

    Lists (such as `curriculum.tasks`) are replaced whole by an override or an inheriting file.
    """
    data = _read_yaml(Path(path)) if path is not None else {}
    for override in overrides:
        _apply_override(data, *_parse_override(override))
    return _build(ExperimentConfig, data, "")


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def setting_value(config: ExperimentConfig, key: str) -> Any:
    """The value of the dotted `key` (e.g. `optimizer.weight_decay`) of `config`."""
    node: Any = config_to_dict(config)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{key!r} is not a setting of the config")
        node = node[part]
    if isinstance(node, dict):
        raise ConfigError(f"{key!r} is a section of the config, not one setting")
    return node


def config_to_yaml(config: Any) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
