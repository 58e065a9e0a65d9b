"""One probe: a run of its own in `RUN/probes/<tag>/` that trains a copy of checkpoint `<tag>` on the probe
language, through the trainer's own machinery, and writes the validation curve and AUC.

The probe run's config (`probe_run_config`) is one task on the probe dataset with the probe's token budget,
weights from the checkpoint's consolidated weights (the checkpoint is only read), a fresh AdamW at the
probe's constant LR, and validation loss on `<probe dataset>/val` at `probe.eval_points` steps (step 0 and
the last included). Being a run, it checkpoints every `probe.checkpoint_every_steps`, resumes exactly after a
kill, and stops on USR1/TERM with the requeue exit code. On completion it writes `RUN/probes/<tag>.json`
atomically and deletes its own checkpoints; its config.yaml and metrics.jsonl stay. A control run with
`curriculum.control.probe_permutations` K > 1 probes the checkpoint K times, each under a probe permutation of
its own: the probe run has K tasks, task k the probe data under permutation k, each starting from the
checkpoint's weights with a fresh AdamW (`curriculum.restart_each_task`), and its result holds their curves'
mean and its AUC (and each one's AUC). The curves are read from the run's metrics.jsonl (its `eval` records).

A probe whose validation loss turns NaN or infinite has diverged, the strongest loss of plasticity: it still
trains to its budget (so its eval grid stays the one its run's other probes share) and writes its result, with
`diverged: true`, `diverged_at_tokens`, a null AUC and null losses from the first non-finite one on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plasticity_dist.common.fileio import atomic_write_json
from plasticity_dist.common.logging import get_logger
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.engine.checkpoint_files import read_trainer_state
from plasticity_dist.probe.auc import AUC_RULES, curve_auc
from plasticity_dist.study.config import (PROBE_SCHEDULING_KEYS, CheckpointSection, CurriculumSection,
                                          DiagnosticsSection, EarlyWarningSection, EvaluationSection, ExperimentConfig,
                                          ForgettingSection, TaskSpec)
from plasticity_dist.study.config_files import config_to_dict, load_config
from plasticity_dist.study.curriculum import dataset_path, probe_permutation, probe_permutation_count
from plasticity_dist.study.errors import ConfigError
from plasticity_dist.study.mitigation_sections import MitigationsSection
from plasticity_dist.train.callbacks.evaluation import EvalPoint
from plasticity_dist.train.metrics import read_metrics

log = get_logger()


def probe_config_hash(config: ExperimentConfig) -> str:
    """Hash of everything that changes a probe's numbers (not where or how it is scheduled)."""
    probe = dataclasses.asdict(config.probe)
    for scheduling_key in PROBE_SCHEDULING_KEYS:
        probe.pop(scheduling_key)
    if not probe["auc_from_point"]:  # the whole curve: the hash every probe had before the setting existed
        probe.pop("auc_from_point")
    data = config.data
    payload = {
        "probe": probe, "seq_len": data.seq_len, "global_batch_size": data.global_batch_size, "seed": data.seed,
        "optimizer": dataclasses.asdict(config.optimizer), "model": config.model.preset,
    }
    permutation = probe_permutation(config)
    if permutation is not None:  # absent otherwise, so the other problems' hashes are the ones they always had
        payload["probe_permutation"] = permutation
    count = probe_permutation_count(config)
    if count > 1:  # each a task of one probe run, whose loader order its task index seeds
        payload["probe_permutation_tasks"] = [probe_permutation(config, index) for index in range(count)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def probe_run_config(config: ExperimentConfig, checkpoint: Path, run_dir: Path) -> ExperimentConfig:
    """The run that probes `checkpoint` under the run config `config`, in `run_dir`: one task, or a task per probe
    permutation of the control problem, each from the checkpoint's weights."""
    probe = config.probe
    count = probe_permutation_count(config)
    tasks = [TaskSpec(name="probe" if count == 1 else f"probe{index}", dataset=probe.dataset,
                      permutation=probe_permutation(config, index)) for index in range(count)]
    return dataclasses.replace(
        config,
        run_dir=str(run_dir),
        resume="auto",
        model=dataclasses.replace(config.model, init_from=str(checkpoint.resolve())),
        # probes read their data in one-block windows and validate on eval_tokens (the task end's too)
        data=dataclasses.replace(config.data, shuffle_window_blocks=1, val_tokens=probe.eval_tokens),
        curriculum=CurriculumSection(problem="continual", tasks=tasks, task_tokens=probe.tokens, cycles=1,
                                     restart_each_task=count > 1),
        optimizer=dataclasses.replace(config.optimizer, lr=probe.lr, schedule="constant"),
        checkpoint=CheckpointSection(every_steps=probe.checkpoint_every_steps, keep_last=1),
        probe=dataclasses.replace(probe, enabled=False),
        evaluation=EvaluationSection(points=probe.eval_points, spacing=probe.eval_spacing, tokens=probe.eval_tokens),
        diagnostics=DiagnosticsSection(enabled=False),
        mitigations=MitigationsSection(),
        early_warning=EarlyWarningSection(enabled=False),
        forgetting=ForgettingSection(enabled=False),
        wandb=dataclasses.replace(config.wandb, enabled=False),  # the trainer logs probe results to its W&B run
    )


def curve_fields(curve: Sequence[EvalPoint], spacing: str, auc_from_point: int = 0) -> dict[str, Any]:
    """A probe result's curve fields from its validation curve, eval points on `spacing`, the AUC over the points
    from `auc_from_point` on; a non-finite loss makes the probe diverged from that point on (JSON has no NaN: null
    losses, null AUC)."""
    tokens = [point.tokens for point in curve]
    losses = [point.val_loss for point in curve]
    first_bad = next((index for index, loss in enumerate(losses) if not math.isfinite(loss)), None)
    if first_bad is not None:
        losses[first_bad:] = [None] * (len(losses) - first_bad)
    return {"eval_tokens": tokens, "val_losses": losses,
            "auc": None if first_bad is not None else curve_auc(tokens[auc_from_point:], losses[auc_from_point:],
                                                                  spacing),
            "auc_rule": AUC_RULES[spacing], "auc_from_point": auc_from_point, "diverged": first_bad is not None,
            "diverged_at_tokens": None if first_bad is None else tokens[first_bad]}


def mean_curve(curves: Sequence[Sequence[EvalPoint]]) -> list[EvalPoint]:
    """The point-by-point mean of curves on one eval grid (NaN where any is not finite: the mean diverged)."""
    return [EvalPoint(points[0].step, points[0].tokens, math.fsum(point.val_loss for point in points) / len(points))
            for points in zip(*curves, strict=True)]


def task_curves(metrics: Path) -> list[list[EvalPoint]]:
    """Each task's validation curve in a run's metrics.jsonl (its `eval` records), steps and tokens counted from
    the task's start."""
    curves: dict[int, list[EvalPoint]] = {}
    for record in read_metrics(metrics):
        if record["event"] == "eval":
            curves.setdefault(record["task_index"], []).append(
                EvalPoint(record["step"], record["tokens"], record["val_loss"]))
    return [[EvalPoint(point.step - curve[0].step, point.tokens - curve[0].tokens, point.val_loss) for point in curve]
            for _, curve in sorted(curves.items())]


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


def _same_run(written: Path, config: ExperimentConfig) -> bool:
    """Whether a probe run's config.yaml describes the run `config` (wherever the run directory now is)."""
    placement = ("run_dir", "resume")
    ours = {key: value for key, value in config_to_dict(config).items() if key not in placement}
    theirs = {key: value for key, value in config_to_dict(load_config(written)).items() if key not in placement}
    theirs["model"]["init_from"] = ours["model"]["init_from"]
    return ours == theirs


def prepare_probe_run(layout: RunLayout, tag: str, config: ExperimentConfig, force: bool) -> ExperimentConfig:
    """The config of the probe run; a probe run left by another probe config is refused, or with `force` removed."""
    probe_run = layout.probe_run(tag)
    val_split = Path(dataset_path(config.data.root, config.probe.dataset)) / "val"
    if not val_split.is_dir():
        raise ConfigError(f"probe.dataset: {val_split} does not exist; preprocess the probe dataset with --val-tokens")
    run_config = probe_run_config(config, layout.checkpoint(tag), probe_run.root)
    if probe_run.config.is_file() and not _same_run(probe_run.config, run_config):
        if not force:
            raise ValueError(f"{probe_run.root} holds a probe run under another config; pass --force to restart it")
        shutil.rmtree(probe_run.root)
    return run_config


def probe_record(tag: str, trainer_state: dict[str, Any], curves: Sequence[Sequence[EvalPoint]],
                 config: ExperimentConfig, world_size: int, started: float) -> dict[str, Any]:
    """The result of the probe of checkpoint `tag`: its position in the run, the mean of its permutations'
    `curves` with its AUC, the probe config's hash and its timing."""
    probe = config.probe
    finished = time.time()
    result = {
        "checkpoint": tag,
        "cycle": trainer_state["probe_cycle"],
        "tasks_trained": trainer_state["task_index"],
        "tokens": trainer_state["tokens_seen"],
        **curve_fields(mean_curve(curves), probe.eval_spacing, probe.auc_from_point),
        "config_hash": probe_config_hash(config),
        "probe_dataset": dataset_path(config.data.root, probe.dataset),
        "world_size": world_size,
        "started_at": started,
        "finished_at": finished,
        "seconds": finished - started,
    }
    if len(curves) > 1:
        result["permutation_aucs"] = [curve_fields(curve, probe.eval_spacing, probe.auc_from_point)["auc"]
                                      for curve in curves]
    return result


def run_probe(checkpoint: str | Path, config_path: str | Path | None = None, force: bool = False) -> int:
    """Run or resume the probe of `checkpoint`; 0 once its result exists, REQUEUE_EXIT_CODE when stopped."""
    checkpoint = Path(checkpoint)
    trainer_state = read_trainer_state(checkpoint)
    layout = RunLayout.of_checkpoint(checkpoint)
    config = load_config(config_path or layout.config)
    result_path = layout.probe_result(checkpoint.name)
    probe_run = layout.probe_run(checkpoint.name)
    if existing_result(result_path, probe_config_hash(config), force) is not None:
        log.info(f"probe of {checkpoint.name} already done with this config: {result_path}")
        shutil.rmtree(probe_run.checkpoints, ignore_errors=True)  # left by a probe killed after its result
        return 0

    from plasticity_dist.train.trainer import Trainer  # DeepSpeed and torch load only for a probe that runs

    trainer = Trainer(prepare_probe_run(layout, checkpoint.name, config, force))
    try:
        status = trainer.run()
        if status != 0:
            return status
        if trainer.accelerator.is_main_process:
            _write_result(result_path, probe_record(
                checkpoint.name, trainer_state, task_curves(probe_run.metrics), config, trainer.world.world_size,
                started=probe_run.config.stat().st_mtime))  # written once, when the probe run began
            shutil.rmtree(probe_run.checkpoints, ignore_errors=True)
        trainer.accelerator.wait_for_everyone()
        return 0
    finally:
        trainer.close()


def _write_result(result_path: Path, result: dict[str, Any]) -> None:
    result_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result_path, result)
    outcome = f"diverged at {result['diverged_at_tokens']:,} tokens" if result["diverged"] else f"AUC {result['auc']:.4f}"
    log.info(f"probe of {result['checkpoint']}: {outcome} → {result_path}")
