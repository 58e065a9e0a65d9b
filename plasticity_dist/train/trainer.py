"""The continual-learning trainer: the composition root that wires config, data, engine and checkpoints.

One `Trainer.run()` walks the run's tasks (see `study/curriculum.py`). A task ends exactly at its token budget
on every rank. Everything else the loop does is a callback (train/callbacks/), asked at each hook: the
task-end evaluation first, then diagnostics, mitigations, the evaluation curve and early warning, and last the
checkpoints and the probes they feed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from plasticity_dist.common.fileio import atomic_write_text
from plasticity_dist.common.logging import get_logger
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.common.run_lock import lock_run_directory
from plasticity_dist.data.loader import ShardLoader, task_loader
from plasticity_dist.engine.checkpoint import Checkpointer
from plasticity_dist.engine.checkpoint_files import read_trainer_state
from plasticity_dist.engine.gpu import detected_peak_tflops, enabled_attention_kernels, on_cuda, require_fused_attention
from plasticity_dist.engine.launch import WorldInfo, build_accelerator, end_distributed, init_world_env, use_bf16
from plasticity_dist.engine.preemption import REQUEUE_EXIT_CODE, PreemptionFlag
from plasticity_dist.engine.steps import StepRunner
from plasticity_dist.engine.validation import Validator
from plasticity_dist.probe.scheduler import ProbeScheduler
from plasticity_dist.study.config import ExperimentConfig
from plasticity_dist.study.config_files import config_to_yaml
from plasticity_dist.study.curriculum import Task, build_tasks, dataset_path
from plasticity_dist.study.errors import ConfigError
from plasticity_dist.train.build import build_model
from plasticity_dist.train.callbacks.base import Callback, Callbacks, LoopPosition, RunContext
from plasticity_dist.train.callbacks.checkpointing import Checkpointing
from plasticity_dist.train.callbacks.diagnostics import Diagnostics
from plasticity_dist.train.callbacks.early_warning import StagnationMonitor
from plasticity_dist.train.callbacks.evaluation import PeriodicEvaluation
from plasticity_dist.train.callbacks.mitigations import (ContinualBackprop, HareTortoise, L2Init, NormalizeProject,
                                                         ReDo, SelfNormalizedResets, ShrinkPerturb, SpectralReg)
from plasticity_dist.train.callbacks.restart import TaskRestart
from plasticity_dist.train.callbacks.task_end import TaskEndEvaluation
from plasticity_dist.train.lr_schedule import learning_rate
from plasticity_dist.train.metrics import MetricsLog, task_record
from plasticity_dist.train.progress import TrainingProgress

log = get_logger()

# The parts of the loop, each built from its config section when turned on; each declares when its hooks run
# (its `priority`, callbacks/base.py).
CALLBACK_TYPES: tuple[type[Callback], ...] = (TaskRestart, TaskEndEvaluation, Diagnostics, ShrinkPerturb, L2Init,
                                              SpectralReg, ReDo, ContinualBackprop, SelfNormalizedResets,
                                              NormalizeProject, HareTortoise, PeriodicEvaluation, StagnationMonitor,
                                              Checkpointing)


@dataclass
class TrainerState:
    """Where the run stands; saved in every checkpoint's trainer_state.json."""

    task_index: int = 0
    step: int = 0  # optimizer steps over the whole run
    step_in_task: int = 0
    tokens_seen: int = 0
    loader_state: dict[str, Any] | None = None  # of the task in progress (identical on every rank)
    world_size: int = 1
    tokenizer: str = ""  # the training data's tokenizer id: probe data must match it
    callbacks: dict[str, Any] = field(default_factory=dict)  # each callback's state_dict()


class Trainer:
    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.preemption = PreemptionFlag()  # first: a signal during start-up is acted on at the first step
        self.world: WorldInfo = init_world_env()
        self.plan = config.data.batch_plan(self.world.world_size)
        self.tasks = build_tasks(config)
        self.run_dir = Path(config.run_dir)
        self.layout = RunLayout(self.run_dir)
        # set from the starting checkpoint or the first dataset; every dataset must match it
        self.tokenizer: str | None = read_trainer_state(config.model.init_from)["tokenizer"] or None \
            if config.model.init_from else None
        first_loader = self._loader(self.tasks[0])
        self.tokenizer = first_loader.tokenizer
        self.vocab_size = first_loader.vocab_size
        for task in {task.datasets: task for task in self.tasks}.values():  # every dataset, before any work
            self._loader(task)
        self.accelerator = build_accelerator(config, self.world)
        self.device = self.accelerator.device
        self.run_lock = lock_run_directory(self.run_dir, self.accelerator.is_main_process)  # before anything is written
        try:
            self._build_components()
        except BaseException:
            self.close()
            raise

    def _build_components(self) -> None:
        """Checkpointer, model, engine, probe scheduler, metrics and callbacks (the run directory is ours by now)."""
        config = self.config
        self.probe_scheduler: ProbeScheduler | None = None
        if config.probe.enabled:
            probe_data = Path(dataset_path(config.data.root, config.probe.dataset))
            if not probe_data.is_dir():
                raise ConfigError(f"probe.dataset: {probe_data} does not exist (preprocess it, or set probe.enabled=false)")
            if self.accelerator.is_main_process:
                self.probe_scheduler = ProbeScheduler(self.run_dir, config.probe)
        self.checkpointer = Checkpointer(
            self.run_dir, self.accelerator, config.checkpoint.keep_last,
            is_protected=self.probe_scheduler.protects if self.probe_scheduler is not None else lambda tag: False,
            slim_dtype=config.checkpoint.slim_dtype if config.checkpoint.slim_after_probe else None,
        )
        self.resume_from = self.checkpointer.resolve(config.resume)
        set_seed(config.seed)
        # a resumed run's weights come from its checkpoint: init_from's are read again only as a reference
        is_main = self.accelerator.is_main_process
        needs_initial = any(part.wants_initial_weights(config, is_main=True) for part in CALLBACK_TYPES)  # on any rank
        model = build_model(config.model, self.vocab_size, config.data.seq_len,
                            load_init=self.resume_from is None or needs_initial)
        keep_initial = any(part.wants_initial_weights(config, is_main) for part in CALLBACK_TYPES)
        self.non_embedding_params = model.num_params()
        self.flops_per_token = model.flops_per_token()
        if on_cuda(config.model.flash_attention):
            dtype = torch.bfloat16 if use_bf16(config) else torch.float32
            require_fused_attention(model.config, config.data.micro_batch_size, dtype, self.device)
        self.peak_tflops = config.launch.peak_tflops if config.launch.peak_tflops is not None else detected_peak_tflops()
        initial_weights = {name: p.detach().clone() for name, p in model.named_parameters()} if keep_initial else {}
        self.step_runner = StepRunner(self.accelerator, model, config, self.plan.accum_steps)
        self.validator = Validator(self.step_runner, config.data)
        self.metrics = MetricsLog.for_run(config, self.layout, self.accelerator.is_main_process)
        self.state = TrainerState(world_size=self.world.world_size, tokenizer=self.tokenizer)
        context = RunContext(config, self.step_runner, self.validator, self.plan, self.tasks, self.metrics,
                             self.layout, is_main, initial_weights, self.checkpointer, self.probe_scheduler,
                             self._checkpoint_contents)
        self.callbacks = Callbacks.build(CALLBACK_TYPES, context)
        self.checkpointing = self.callbacks.member(Checkpointing)

    def _checkpoint_contents(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """What a checkpoint saves besides the engine: where the run stands with every callback's state, and this
        rank's callback tensors."""
        self.state.callbacks = self.callbacks.state_dict()
        return asdict(self.state), self.callbacks.rank_tensors()

    def close(self) -> None:
        """Close the metrics' sinks, give up the run directory (its lock) and leave the process group: at the
        end of a run, on a stop signal or on an error."""
        if getattr(self, "metrics", None) is not None:
            self.metrics.close()
        if self.run_lock is not None:
            self.run_lock.release()
        end_distributed()

    def _loader(self, task: Task) -> ShardLoader:
        return task_loader(task, self.config.data, self.plan, self.world.rank, self.tokenizer)

    def _start_or_resume(self) -> TrainerState:
        if self.accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not self.layout.config.exists():
                self.layout.config.write_text(config_to_yaml(self.config))
        self.accelerator.wait_for_everyone()
        self.checkpointer.remove_unfinished()
        checkpoint = self.resume_from
        if checkpoint is None:
            self.metrics.truncate_after(-1)  # records of an attempt that died before its first checkpoint
            if self.config.probe.enabled and self.config.probe.baseline:
                self.checkpointing.save_for_probe("step000000000-init", probe_cycle=0)
            return self.state
        saved = self.checkpointer.load(checkpoint)
        self.state = state = TrainerState(**{k: v for k, v in saved.items() if k in TrainerState.__dataclass_fields__})
        log.info(f"resumed from {checkpoint} at step {state.step} (task {state.task_index}, {state.tokens_seen:,} tokens)")
        self.metrics.truncate_after(state.step, next_task=state.task_index if state.step_in_task == 0 else None)
        self.callbacks.load_state_dict(state.callbacks)
        self.callbacks.load_rank_tensors(self.checkpointer.load_rank_tensors(checkpoint, saved))
        state.world_size = self.world.world_size
        self.checkpointing.poll()  # resubmit probes that died with the previous process
        return state

    def run(self) -> int:
        """Train every remaining task; returns the process exit code (REQUEUE_EXIT_CODE when preempted)."""
        log.info("resolved config:\n" + config_to_yaml(self.config))
        state = self._start_or_resume()
        stage = self.config.launch.zero_stage
        log.info(f"{self.config.model.preset} model ({self.non_embedding_params:,} non-embedding params), "
                 f"{len(self.tasks)} tasks, world size {self.world.world_size} on {self.device.type}, "
                 + (f"ZeRO-{stage}" if stage else "without ZeRO (stage 0)"))
        if self.device.type == "cuda":
            self._log_gpu_path()
        with TrainingProgress(self.tasks, enabled=self.accelerator.is_main_process) as progress:
            for task in self.tasks[state.task_index:]:
                if not self._train_task(task, state, progress):
                    if self.accelerator.is_main_process:
                        atomic_write_text(self.layout.preempted, f"{state.step}\n")
                    return REQUEUE_EXIT_CODE
                self._finish_task(task, state)
        self.checkpointing.finish()
        log.info(f"run complete: {state.step} steps, {state.tokens_seen:,} tokens in {self.run_dir}")
        return 0

    def _log_gpu_path(self) -> None:
        config = self.config
        log.info(f"GPU path on {torch.cuda.get_device_name(self.device)}: {'bf16' if use_bf16(config) else 'fp32'}, "
                 f"compile={on_cuda(config.model.compile)}, fused AdamW={on_cuda(config.optimizer.fused)}, "
                 f"activation checkpointing={config.model.activation_checkpointing}, "
                 f"attention kernels: {', '.join(enabled_attention_kernels())}")
        if self.peak_tflops is None:
            log.warning("no MFU in the step records: this GPU's peak is unknown; set launch.peak_tflops")

    def _train_task(self, task: Task, state: TrainerState, progress: TrainingProgress) -> bool:
        """Train `task` to its budget; False when a stop signal arrived (a checkpoint was saved)."""
        with self._loader(task) as loader:
            if state.loader_state is not None:
                loader.load_state_dict(state.loader_state)
            return self._train_steps(task, loader, state, progress)

    def _train_steps(self, task: Task, loader: ShardLoader, state: TrainerState, progress: TrainingProgress) -> bool:
        """The optimizer steps of `task` from `state`, on batches from `loader`."""
        batches = iter(loader)
        progress.start_task(task, loader.num_steps, state.step_in_task)
        while state.step_in_task < loader.num_steps:
            if self.run_lock is not None:
                self.run_lock.check()
            started = time.perf_counter()
            at = self._position(task, state.step + 1, state.step_in_task + 1, loader.num_steps)
            if at.step_in_task == 1:
                self.callbacks.on_task_start(at)
            self.callbacks.on_step_start(at)
            loss, grad_norm = self.step_runner.train_step(batches, at.lr, self.callbacks)
            self.callbacks.after_optimizer_step(at)
            state.step += 1
            state.step_in_task += 1
            state.tokens_seen += self.plan.tokens_per_step
            state.loader_state = loader.state_dict()
            progress.advance(loss)
            if state.step % self.config.log_every == 0 or at.is_task_end:
                self._log_step(task, state, loss, at.lr, grad_norm, self.plan.tokens_per_step / (time.perf_counter() - started))
            self.callbacks.on_step_end(at)
            if self.preemption.should_stop(self.device):
                log.warning(f"stop signal received: checkpointing at step {state.step} and exiting with {REQUEUE_EXIT_CODE}")
                self.checkpointing.save(task.checkpoint_tag(state.step))
                return False
        return True

    def _position(self, task: Task, step: int, step_in_task: int, task_steps: int) -> LoopPosition:
        """Optimizer step `step` of the run (from 1), the `step_in_task`-th of the task's `task_steps`."""
        lr = learning_rate(self.config.optimizer, step - 1, step_in_task - 1, task_steps)
        return LoopPosition(task, step, step_in_task, task_steps, step * self.plan.tokens_per_step, lr)

    def _log_step(self, task: Task, state: TrainerState, loss: float, lr: float, grad_norm: float, tokens_per_s: float) -> None:
        record = task_record("step", task, step=state.step, tokens=state.tokens_seen, loss=loss, lr=lr,
                             grad_norm=grad_norm, tokens_per_s=tokens_per_s)
        if self.device.type == "cuda":
            record["peak_memory_bytes"] = torch.cuda.max_memory_allocated(self.device)
            if self.peak_tflops:
                record["mfu"] = self.flops_per_token * tokens_per_s / (self.peak_tflops * 1e12 * self.world.world_size)
        self.metrics.write(record)

    def _finish_task(self, task: Task, state: TrainerState) -> None:
        """The task is done: the state moves on to the next task, then the callbacks act on its end (the
        task-end evaluation first, the checkpoint last)."""
        at = self._position(task, state.step, state.step_in_task, state.step_in_task)
        state.task_index += 1
        state.step_in_task = 0
        state.loader_state = None
        self.callbacks.on_task_end(at)


def train(config: ExperimentConfig) -> int:
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.close()
