"""Weights & Biases, offline: the local run files, read back with wandb's own reader, hold the records of
metrics.jsonl (each once, across a resume, under one W&B run id kept in the run directory); off, nothing
imports wandb."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.study.config_files import load_config
from plasticity_dist.train.metrics import MetricsLog, read_metrics
from plasticity_dist.train.probe_run import probe_run_config
from plasticity_dist.train.wandb_sink import WandbSink, sync_commands
from runs import REPO, tiny_overrides, train

OFFLINE = ["wandb.enabled=true", "wandb.mode=offline"]
WANDB = Path(sys.executable).parent / "wandb"


@dataclass
class WandbRunFile:
    """One `RUN/wandb/offline-run-*/run-<id>.wandb` transaction log, as wandb's own reader prints it."""

    run: dict[str, Any] = field(default_factory=dict)  # run_id, run_group, display_name, tags, config, ...
    history: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (step, items) per row


def read_run_files(run_dir: Path) -> list[WandbRunFile]:
    files = []
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        printed = subprocess.run([str(WANDB), "leet", "inspect", "--json", str(path)], capture_output=True,
                                 text=True, timeout=120, check=True).stdout
        run_file = WandbRunFile()
        for record in map(json.loads, printed.splitlines()):
            if record["type"] == "run":
                run_file.run = record["run"]
            elif record["type"] == "history":
                run_file.history.append((record["history"]["step"]["num"], record["history"]["item"]))
        files.append(run_file)
    return files


def logged(files: list[WandbRunFile], key: str) -> list[tuple[int, Any]]:
    """Every (step, value) of one history key, over all files in order."""
    return [(step, items[key]) for run_file in files for step, items in run_file.history if key in items]


def step_losses(metrics_path: Path) -> list[tuple[int, float]]:
    return [(record["step"], record["loss"]) for record in read_metrics(metrics_path) if record["event"] == "step"]


def step_record(step: int) -> dict[str, Any]:
    return {"event": "step", "task": "en", "task_index": 0, "cycle": 1, "step": step, "tokens": 256 * step,
            "loss": 6.0 - 0.25 * step, "lr": 1e-3}


def task_end_record(step: int) -> dict[str, Any]:
    return {"event": "task_end", "task": "en", "task_index": 0, "cycle": 1, "step": step, "tokens": 256 * step,
            "val_loss": 4.5, "val_losses": {"en": 4.5, "zh": None}}


def test_offline_run_continues_one_wandb_run_across_a_resume_and_logs_each_record_once(tmp_path):
    config = load_config(None, [f"run_dir={tmp_path / 'run'}", *OFFLINE, "model.preset=100K", "seed=3",
                                "mitigations.shrink_perturb.enabled=true"])
    layout = RunLayout(config.run_dir)
    first_attempt = MetricsLog.for_run(config, layout, is_main=True)
    first_attempt.truncate_after(-1)
    for record in [*map(step_record, range(1, 7)), task_end_record(6), step_record(7)]:
        first_attempt.write(record)
    first_attempt.close()  # killed at step 7; its last checkpoint was at step 4

    resumed = MetricsLog.for_run(config, layout, is_main=True)
    resumed.truncate_after(4)
    for record in [*map(step_record, range(5, 7)), task_end_record(6), *map(step_record, range(7, 9))]:
        resumed.write(record)
    probe = {"checkpoint": "step000000006-task0000-cycle001-en", "cycle": 1, "tokens": 1536, "auc": 3.25,
             "val_losses": [4.0, 3.0]}
    layout.probe_result(probe["checkpoint"]).parent.mkdir(parents=True)
    layout.probe_result(probe["checkpoint"]).write_text(json.dumps(probe))
    resumed.close()  # the probe result arrived: logged when the trainer closes

    files = read_run_files(layout.root)
    saved_id = json.loads(layout.wandb_run.read_text())["id"]
    assert len(files) == 2 and [run_file.run["run_id"] for run_file in files] == [saved_id, saved_id]
    assert logged(files, "step/loss") == step_losses(layout.metrics)  # steps 1-8, the redone 5-7 not twice
    assert [step for step, _ in logged(files, "step/loss")] == list(range(1, 9))
    assert logged(files, "task_end/val_losses/en") == [(6, 4.5)]
    assert not logged(files, "task_end/val_losses/zh")  # a missing value is left out, not logged as null
    assert logged(files, "probe/auc") == [(8, 3.25)]
    group = "100K-continual-shrink_perturb(shrink=0.4, noise_std=0.001)"
    assert (files[0].run["run_group"], files[0].run["display_name"]) == (group, f"{group}-seed3")
    assert {"100K", "continual", "seed3"} <= set(files[0].run["tags"])
    assert files[0].run["config"]["update"]["study"] == {"size": "100K", "problem": "continual", "seed": 3,
                                                         "mitigations": "shrink_perturb(shrink=0.4, noise_std=0.001)"}

    started_over = MetricsLog.for_run(config, layout, is_main=True)
    started_over.truncate_after(-1)  # no checkpoint to resume from: metrics.jsonl and the W&B run start over
    started_over.close()
    assert json.loads(layout.wandb_run.read_text())["id"] != saved_id


def test_trainer_logs_every_record_to_the_wandb_run_it_resumes(zero1_one_rank, data_root, tmp_path):
    """A copy of a finished 2-task run whose first attempt logged to W&B up to step 40 and died; the trainer
    resumes it from the first task's checkpoint (step 32), continues the same W&B run and logs what is new."""
    run_dir = tmp_path / "run"
    shutil.copytree(zero1_one_rank, run_dir)
    layout = RunLayout(run_dir)
    overrides = tiny_overrides(data_root, launch__zero_stage=1, **{"wandb.enabled": "true", "wandb.mode": "offline"})
    first_attempt = WandbSink(load_config(None, [f"run_dir={run_dir}", *overrides]), layout)
    first_attempt.truncate_after(-1)
    for record in read_metrics(layout.metrics):
        if record["step"] <= 40:
            first_attempt.write(record)
    first_attempt.close()
    first_checkpoint = sorted(path for path in layout.checkpoints.iterdir() if path.is_dir())[0]

    finished = train(run_dir, [*overrides, f"resume={first_checkpoint}"], processes=1)
    assert finished.returncode == 0, finished.stderr[-3000:]

    files = read_run_files(run_dir)
    assert len(files) == 2 and files[0].run["run_id"] == files[1].run["run_id"]
    assert logged(files, "step/loss") == step_losses(layout.metrics)
    assert [step for step, _ in logged(files[1:], "step/loss")] == list(range(41, 65))
    records = read_metrics(layout.metrics)
    for event in ("task_end", "diagnostics"):  # one W&B history row per step holds every event of that step
        steps = [record["step"] for record in records if record["event"] == event]
        logged_steps = [step for run_file in files for step, items in run_file.history
                        if any(name.startswith(f"{event}/") for name in items)]
        assert steps and logged_steps == steps, event
    last_task_end = [record for record in records if record["event"] == "task_end"][-1]
    assert logged(files, "task_end/val_loss")[-1] == (last_task_end["step"], last_task_end["val_loss"])


def test_a_probe_run_logs_nothing_to_wandb_of_its_own(tmp_path):
    """Its trainer logs the probe's result to the run's W&B run (one writer per W&B run)."""
    config = load_config(None, [f"run_dir={tmp_path / 'run'}", *OFFLINE])
    probe_config = probe_run_config(config, tmp_path / "run/checkpoints/tag", tmp_path / "run/probes/tag")
    assert config.wandb.enabled and not probe_config.wandb.enabled


def test_nothing_imports_wandb_when_it_is_off(tmp_path):
    code = f"""
import sys
from plasticity_dist.study.config_files import load_config
from plasticity_dist.train.metrics import MetricsLog
from plasticity_dist.common.run_layout import RunLayout
import plasticity_dist.cli, plasticity_dist.train.trainer
config = load_config(None, ["run_dir={tmp_path}"])
metrics = MetricsLog.for_run(config, RunLayout(config.run_dir), is_main=True)
metrics.truncate_after(-1)
metrics.write({{"event": "step", "step": 1, "loss": 1.0}})
metrics.close()
assert "wandb" not in sys.modules, "wandb was imported"
"""
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (tmp_path / "metrics.jsonl").is_file() and not (tmp_path / "wandb").exists()


def metric_definitions(path: Path) -> list[dict[str, Any]]:
    printed = subprocess.run([str(WANDB), "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                             timeout=120, check=True).stdout
    return [record["metric"] for record in map(json.loads, printed.splitlines()) if record["type"] == "metric"]


def test_a_probe_result_after_a_resume_is_logged_past_the_last_step_on_the_probe_cycle_axis(tmp_path):
    """A resumed W&B run ignores steps at or below its last: a result that arrives before the resumed trainer
    logs anything goes to the step after the last one, and its charts use probe/cycle as their x-axis."""
    config = load_config(None, [f"run_dir={tmp_path / 'run'}", *OFFLINE, "model.preset=100K"])
    layout = RunLayout(config.run_dir)
    first_attempt = MetricsLog.for_run(config, layout, is_main=True)
    first_attempt.truncate_after(-1)
    for record in [*map(step_record, range(1, 7)), task_end_record(6)]:
        first_attempt.write(record)
    first_attempt.close()

    resumed = MetricsLog.for_run(config, layout, is_main=True)
    resumed.truncate_after(4)  # from the step-4 checkpoint; stopped again before it logged a new step
    probe = {"checkpoint": "step000000006-task0000-cycle001-en", "cycle": 1, "tokens": 1536, "auc": 3.25}
    layout.probe_result(probe["checkpoint"]).parent.mkdir(parents=True)
    layout.probe_result(probe["checkpoint"]).write_text(json.dumps(probe))
    resumed.close()

    first, second = read_run_files(layout.root)
    assert max(step for step, _ in first.history) == 6
    assert [(step, items["probe/auc"], items["probe/cycle"]) for step, items in second.history] == [(7, 3.25, 1)]
    second_file = sorted((layout.root / "wandb").glob("offline-run-*/run-*.wandb"))[-1]
    assert {"glob_name": "probe/*", "step_metric": "probe/cycle"}.items() <= next(
        metric for metric in metric_definitions(second_file) if metric.get("glob_name") == "probe/*").items()

    # the sync order that keeps both attempts' history, for the installed wandb and for wandb < 0.30
    folders = [str(path) for path in sorted((layout.root / "wandb").glob("offline-run-*"),
                                            key=lambda folder: next(folder.glob("run-*.wandb")).stat().st_mtime)]
    run_id = json.loads(layout.wandb_run.read_text())["id"]
    assert sync_commands(layout, "0.31.0") == [["wandb", "sync", *folders]]
    assert sync_commands(layout, "0.29.1") == [["wandb", "sync", folders[0]],
                                               ["wandb", "sync", "--append", "--id", run_id, folders[1]]]
    printed = subprocess.run([sys.executable, str(REPO / "tools" / "wandb_sync.py"), str(layout.root), "--dry-run"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    assert printed.splitlines() == [f"wandb sync {' '.join(folders)}"]
    would_sync = subprocess.run([str(WANDB), "sync", "--dry-run", *folders], capture_output=True, text=True,
                                timeout=120, check=True)
    assert all(folder.split("/")[-1] in would_sync.stdout + would_sync.stderr for folder in folders)


def eval_record(step: int, task_index: int) -> dict[str, Any]:
    return {"event": "eval", "task": ["en", "zh"][task_index], "task_index": task_index, "cycle": 1, "step": step,
            "val_loss": 4.0 + task_index}


def test_records_of_two_tasks_at_one_step_are_each_logged_once(tmp_path):
    """A task's last evaluation and the next task's first share a step: both are sent, and neither again
    after a resume from that step."""
    config = load_config(None, [f"run_dir={tmp_path / 'run'}", *OFFLINE, "model.preset=100K"])
    layout = RunLayout(config.run_dir)
    first_attempt = MetricsLog.for_run(config, layout, is_main=True)
    first_attempt.truncate_after(-1)
    for record in [step_record(8), eval_record(8, 0), eval_record(8, 1)]:
        first_attempt.write(record)
    first_attempt.close()
    resumed = MetricsLog.for_run(config, layout, is_main=True)
    resumed.truncate_after(8)
    for record in [eval_record(8, 0), eval_record(8, 1), step_record(9)]:
        resumed.write(record)
    resumed.close()

    first, second = read_run_files(layout.root)
    assert [(step, items["eval/task"], items["eval/val_loss"]) for step, items in first.history] == [(8, "zh", 5.0)]
    assert [step for step, _ in second.history] == [9]
