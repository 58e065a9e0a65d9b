"""The continual-learning trainer: the composition root that wires config, data, engine and checkpoints.

One `Trainer.run()` walks the run's tasks (see `curriculum.py`). A task ends exactly at its token budget
on every rank; at each task end the trainer evaluates on the task's validation split and on every
language's (forgetting, and the probe language zero-shot), then checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from plasticity_dist.callbacks import Callback, Callbacks, LoopPosition
from plasticity_dist.checkpoint import Checkpointer, load_consolidated_weights, read_trainer_state
from plasticity_dist.config import ConfigError, ExperimentConfig, config_to_yaml
from plasticity_dist.curriculum import Task, build_tasks, dataset_path, languages
from plasticity_dist.data.loader import ShardLoader
from plasticity_dist.diagnostics import Diagnostics, heldout_batch
from plasticity_dist.early_warning import StagnationMonitor
from plasticity_dist.evaluation import PeriodicEvaluation, validation_loss
from plasticity_dist.launch import WorldInfo, build_accelerator, gradient_accumulation_steps, init_world_env
from plasticity_dist.fileio import atomic_write_text
from plasticity_dist.logging import get_logger
from plasticity_dist.lr_schedule import learning_rate
from plasticity_dist.metrics import MetricsLog
from plasticity_dist.mitigations import ContinualBackprop, L2Init, ReDo, ShrinkPerturb
from plasticity_dist.model import GPT
from plasticity_dist.preemption import REQUEUE_EXIT_CODE, PreemptionFlag
from plasticity_dist.presets import get_preset
from plasticity_dist.run_layout import RunLayout
from plasticity_dist.run_lock import lock_run_directory
from plasticity_dist.probe.scheduler import ProbeScheduler
from plasticity_dist.steps import StepRunner
from plasticity_dist.progress import TrainingProgress

log = get_logger()


@dataclass
class TrainerState:
    """Where the run stands; saved in every checkpoint's trainer_state.json."""

    task_index: int = 0
    step: int = 0  # optimizer steps over the whole run
    step_in_task: int = 0
    tokens_seen: int = 0
    loader: dict[str, Any] | None = None  # state of the task in progress (identical on every rank)
    world_size: int = 1
    tokenizer: str = ""  # the training data's tokenizer id: probe data must match it
    callbacks: dict[str, Any] = field(default_factory=dict)  # each callback's state_dict()


class Trainer:
    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.preemption = PreemptionFlag()  # first: a signal during start-up is acted on at the first step
        self.world: WorldInfo = init_world_env()
        self.accum_steps = gradient_accumulation_steps(config, self.world.world_size)
        self.tokens_per_step = config.data.global_batch_size * config.data.seq_len
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
        """Model, engine, probes, checkpointer, metrics and callbacks (the run directory is ours by now)."""
        config = self.config
        set_seed(config.seed)
        model = GPT(get_preset(config.model.preset).gpt_config(self.vocab_size, config.data.seq_len))
        if config.model.init_from:
            model.load_state_dict(load_consolidated_weights(config.model.init_from, list(model.state_dict())))
        self.non_embedding_params = model.num_params()
        self.flops_per_token = model.flops_per_token()
        keep_initial = config.mitigations.l2_init.enabled or (config.diagnostics.enabled and self.accelerator.is_main_process)
        initial_weights = {name: p.detach().clone() for name, p in model.named_parameters()} if keep_initial else {}
        self.steps = StepRunner(self.accelerator, model, config, self.accum_steps)
        self.probes = None
        if config.probe.enabled:
            probe_data = Path(dataset_path(config.data.root, config.probe.dataset))
            if not probe_data.is_dir():
                raise ConfigError(f"probe.dataset: {probe_data} does not exist (preprocess it, or set probe.enabled=false)")
            if self.accelerator.is_main_process:
                self.probes = ProbeScheduler(self.run_dir, config.probe)
        self.checkpointer = Checkpointer(
            self.run_dir, self.accelerator, config.checkpoint.keep_last,
            is_protected=lambda tag: self.probes is not None and tag in self.probes.queue.protected_tags(),
        )
        self.metrics = MetricsLog.for_run(config, self.layout, self.accelerator.is_main_process)
        self.callbacks = Callbacks(self._callbacks(initial_weights))

    def close(self) -> None:
        """Close the metrics' sinks and give up the run directory (its lock): at the end of a run, on a stop
        signal or on an error."""
        if getattr(self, "metrics", None) is not None:
            self.metrics.close()
        if self.run_lock is not None:
            self.run_lock.release()

    def _callbacks(self, initial_weights: dict[str, torch.Tensor]) -> list[Callback]:
        """The optional behaviour this run's config turns on: diagnostics first, so they measure the
        trained weights before a mitigation changes them."""
        config, is_main = self.config, self.accelerator.is_main_process
        mitigations = config.mitigations
        batch = None
        if config.diagnostics.enabled or mitigations.redo.enabled:
            datasets = [dataset for task in self.tasks for dataset in task.datasets]
            batch = heldout_batch(datasets, config.data.seq_len, config.diagnostics.batch_size)
        members: list[Callback] = []
        if config.diagnostics.enabled:
            members.append(Diagnostics(config.diagnostics, self.steps, batch, initial_weights, self.metrics, is_main))
        if config.evaluation.points or config.evaluation.every_steps:
            members.append(PeriodicEvaluation(config.evaluation, self.steps, config.data, self.tokens_per_step, self.metrics))
        if mitigations.shrink_perturb.enabled:
            members.append(ShrinkPerturb(mitigations.shrink_perturb, self.steps, config.seed))
        if mitigations.l2_init.enabled:
            members.append(L2Init(mitigations.l2_init, self.steps, initial_weights))
        if mitigations.redo.enabled:
            members.append(ReDo(mitigations.redo, self.steps, batch, config.seed))
        if mitigations.cbp.enabled:
            members.append(ContinualBackprop(mitigations.cbp, self.steps, config.seed))
        if config.early_warning.enabled:
            members.append(StagnationMonitor(config.early_warning, self.run_dir, self.metrics, is_main))
        return members

    def _loader(self, task: Task) -> ShardLoader:
        data = self.config.data
        return ShardLoader(
            task.datasets, seq_len=data.seq_len, micro_batch_size=data.micro_batch_size,
            global_batch_size=data.global_batch_size, token_budget=task.tokens, rank=self.world.rank,
            world_size=self.world.world_size, seed=data.seed, task=task.index, num_workers=data.num_workers,
            weights=task.weights, shuffle_window_blocks=data.shuffle_window_blocks,
            tokenizer=self.tokenizer,
        )

    def _start_or_resume(self) -> TrainerState:
        if self.accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not self.layout.config.exists():
                self.layout.config.write_text(config_to_yaml(self.config))
        self.accelerator.wait_for_everyone()
        self.checkpointer.remove_unfinished()
        checkpoint = self.checkpointer.resolve(self.config.resume)
        if checkpoint is None:
            self.metrics.truncate_after(-1)  # records of an attempt that died before its first checkpoint
            state = TrainerState(world_size=self.world.world_size, tokenizer=self.tokenizer)
            if self.config.probe.enabled and self.config.probe.baseline:
                self._save_for_probe("step000000000-init", state, probe_cycle=0)
            return state
        saved = self.checkpointer.load(checkpoint)
        state = TrainerState(**{k: v for k, v in saved.items() if k in TrainerState.__dataclass_fields__})
        log.info(f"resumed from {checkpoint} at step {state.step} (task {state.task_index}, {state.tokens_seen:,} tokens)")
        self.metrics.truncate_after(state.step)
        self.callbacks.load_state_dict(state.callbacks)
        state.world_size = self.world.world_size
        if self.probes is not None:
            self.probes.poll()  # resubmit probes that died with the previous process
        return state

    def run(self) -> int:
        """Train every remaining task; returns the process exit code (REQUEUE_EXIT_CODE when preempted)."""
        log.info("resolved config:\n" + config_to_yaml(self.config))
        state = self._start_or_resume()
        log.info(f"{self.config.model.preset} model ({self.non_embedding_params:,} non-embedding params), "
                 f"{len(self.tasks)} tasks, world size {self.world.world_size} on {self.device.type}, "
                 f"ZeRO-{self.config.launch.zero_stage}")
        with TrainingProgress(self.tasks, enabled=self.accelerator.is_main_process) as progress:
            for task in self.tasks[state.task_index:]:
                if not self._train_task(task, state, progress):
                    if self.accelerator.is_main_process:
                        atomic_write_text(self.layout.preempted, f"{state.step}\n")
                    return REQUEUE_EXIT_CODE
                self._finish_task(task, state)
        if self.probes is not None:
            self.probes.drain()
        log.info(f"run complete: {state.step} steps, {state.tokens_seen:,} tokens in {self.run_dir}")
        return 0

    def _train_task(self, task: Task, state: TrainerState, progress: TrainingProgress) -> bool:
        """Train `task` to its budget; False when a stop signal arrived (a checkpoint was saved)."""
        loader = self._loader(task)
        if state.loader is not None:
            loader.load_state_dict(state.loader)
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
            loss, grad_norm = self.steps.train_step(batches, at.lr, self.callbacks)
            self.callbacks.after_optimizer_step(at)
            state.step += 1
            state.step_in_task += 1
            state.tokens_seen += self.tokens_per_step
            state.loader = loader.state_dict()
            progress.advance(loss)
            if state.step % self.config.log_every == 0 or at.is_task_end:
                self._log_step(task, state, loss, at.lr, grad_norm, self.tokens_per_step / (time.perf_counter() - started))
            every = self.config.checkpoint.every_steps
            if every and state.step % every == 0 and state.step_in_task < loader.num_steps:
                self._save(task, state, keep=False)
            if self.preemption.should_stop(self.device):
                log.warning(f"stop signal received: checkpointing at step {state.step} and exiting with {REQUEUE_EXIT_CODE}")
                self._save(task, state, keep=False)
                return False
        return True

    def _position(self, task: Task, step: int, step_in_task: int, task_steps: int) -> LoopPosition:
        """Optimizer step `step` of the run (from 1), the `step_in_task`-th of the task's `task_steps`."""
        lr = learning_rate(self.config.optimizer, step - 1, step_in_task - 1, task_steps)
        return LoopPosition(task, step, step_in_task, task_steps, step * self.tokens_per_step, lr)

    def _log_step(self, task: Task, state: TrainerState, loss: float, lr: float, grad_norm: float, tokens_per_s: float) -> None:
        record = {
            "event": "step", "time": time.time(), "task": task.name, "task_index": task.index, "cycle": task.cycle,
            "step": state.step, "tokens": state.tokens_seen, "loss": loss, "lr": lr, "grad_norm": grad_norm,
            "tokens_per_s": tokens_per_s,
        }
        if torch.cuda.is_available():
            peak_flops = self.config.launch.peak_tflops * 1e12 * self.world.world_size
            record["mfu"] = self.flops_per_token * tokens_per_s / peak_flops
        self.metrics.write(record)

    def _finish_task(self, task: Task, state: TrainerState) -> None:
        record = {
            "event": "task_end", "time": time.time(), "task": task.name, "task_index": task.index, "cycle": task.cycle,
            "step": state.step, "tokens": state.tokens_seen, "val_loss": self.evaluate(task),
        }
        if self.config.forgetting.enabled:
            record |= self.evaluate_languages()
        self.metrics.write(record)
        self.callbacks.on_task_end(self._position(task, state.step, state.step_in_task, state.step_in_task))
        state.task_index += 1
        state.step_in_task = 0
        state.loader = None
        if task.probe_after:
            self._save_for_probe(task.checkpoint_tag(state.step), state, probe_cycle=task.cycle)
        else:
            self._save(task, state, keep=False)
            if self.probes is not None:
                self.probes.poll()  # a probe that died is resubmitted within a cycle, not only at its end

    def evaluate(self, task: Task) -> float | None:
        """Mean loss on the task's validation split (`<dataset>/val`), the same batches on every rank."""
        return self._validation_loss(task.val_datasets, self.config.data.val_tokens)

    def evaluate_languages(self) -> dict[str, Any]:
        """`val_losses`: the loss on every training language's validation split, and `probe_val_loss`: on the
        probe language's, zero-shot (no update); `forgetting.val_tokens` each, null where a split is missing."""
        tokens = self.config.forgetting.val_tokens
        probe_dataset = dataset_path(self.config.data.root, self.config.probe.dataset)
        return {"val_losses": {name: self._validation_loss((dataset,), tokens)
                               for name, dataset in languages(self.config).items()},
                "probe_val_loss": self._validation_loss((probe_dataset,), tokens)}

    def _validation_loss(self, datasets: tuple[str, ...], tokens: int) -> float | None:
        return validation_loss(self.steps, datasets, tokens, self.config.data)

    def _save(self, task: Task, state: TrainerState, keep: bool) -> Path:
        state.callbacks = self.callbacks.state_dict()
        return self.checkpointer.save(task.checkpoint_tag(state.step), asdict(state), keep=keep)

    def _save_for_probe(self, tag: str, state: TrainerState, probe_cycle: int) -> None:
        """Save a checkpoint kept for good, then queue its probe; training goes on at once."""
        state.callbacks = self.callbacks.state_dict()
        self.checkpointer.save(tag, {**asdict(state), "probe_cycle": probe_cycle}, keep=True)
        if self.probes is not None:
            self.probes.request(tag)


def train(config: ExperimentConfig) -> int:
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.close()
