"""Weights & Biases, optional (`wandb.enabled=true`): the main process logs every `metrics.jsonl` record to one
W&B run per run directory, and every probe result once the trainer sees it. Only this module imports `wandb`,
and it is imported only when W&B is on.

- The W&B run's id is kept in `RUN/wandb_run.json`, so a resumed trainer continues the same W&B run (online it
  resumes it; offline it writes another `RUN/wandb/offline-run-*` folder under the same id, which must be
  synced after the earlier ones: `sync_commands`). A run started over (no checkpoint to resume from) starts a
  new W&B run, as `metrics.jsonl` starts over.
- W&B's step is the optimizer step, and W&B takes no step twice: a resumed W&B run ignores steps at or below
  its last. A resumed trainer redoes the steps after its checkpoint, whose records W&B already holds (the same
  numbers: resume is exact), so records up to the last logged position (step, and the task and event of each
  record logged at it), kept beside the id, are not sent again.
- Probe results are logged by the trainer, at task ends and when it closes, each once: a probe runs beside the
  trainer or on another node while the trainer logs, and a W&B run takes one writer. A result that arrives
  after the trainer has exited is logged when the run is next resumed. Their charts use their own axis,
  `probe/cycle`; their rows go where W&B keeps them: the step this process is logging, or, before it has
  logged any, the step after the last one W&B holds.
- Runs are grouped as the report groups replicates: by default the W&B group is `<size>-<problem>` plus the
  run's mitigations and the value of the setting it sweeps, and the name adds `seed<seed>`; size, problem, mitigations and seed are also config keys
  (`study.*`) and tags, to group a sweep by any of them.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from plasticity_dist.common.fileio import atomic_write_json
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.study.config import ExperimentConfig, setting_value
from plasticity_dist.study.config_files import config_to_dict
from plasticity_dist.study.labels import study_labels

PROBE_EVENT = "probe"


def default_group(config: ExperimentConfig) -> str:
    """`<size>-<problem>[-<mitigations>][-<swept setting>=<value>]`: runs that differ only in their seed share a
    group."""
    labels = study_labels(config)
    mitigations = "" if labels["mitigations"] == "none" else f"-{labels['mitigations']}"
    swept = f"-{config.sweep}={setting_value(config, config.sweep)}" if config.sweep else ""
    return f"{labels['size']}-{labels['problem']}{mitigations}{swept}"


def wandb_items(record: dict[str, Any]) -> dict[str, Any]:
    """A record's fields as W&B history keys `<event>/<field>` (nested mappings as `<event>/<field>/<key>`);
    its step is W&B's step. Missing values (null) and lists (a probe's curve) are left out."""
    items: dict[str, Any] = {}

    def add(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for inner_key, inner_value in value.items():
                add(f"{key}/{inner_key}", inner_value)
        elif value is not None and not isinstance(value, list):
            items[key] = value

    for field, value in record.items():
        if field not in ("event", "step"):
            add(f"{record['event']}/{field}", value)
    return items


def record_key(record: dict[str, Any]) -> str:
    """What tells two records of one step apart: their task and event (a task's last evaluation and the next
    task's first share a step)."""
    return f"{record.get('task_index', '')}/{record['event']}"


class WandbSink:
    """The W&B run of one run directory, fed the records `MetricsLog` writes."""

    def __init__(self, config: ExperimentConfig, layout: RunLayout) -> None:
        self.config = config
        self.layout = layout
        self.run: Any = None
        self.state: dict[str, Any] = {}  # id, last logged step and the records at it, logged probe results
        self.open_step: int | None = None  # the step this process last logged at: W&B still takes records at it

    def truncate_after(self, step: int) -> None:
        """The trainer (re)starts after `step`: -1 starts a new W&B run, a checkpoint's step continues the
        saved one."""
        saved = self.layout.wandb_run
        keep = step >= 0 and saved.is_file()
        self._start(json.loads(saved.read_text()) if keep else None)

    def write(self, record: dict[str, Any]) -> None:
        if self.run is None:
            self._start(None)
        step = record["step"]
        if step < self.state["step"] or (step == self.state["step"] and record_key(record) in self.state["events"]):
            return  # logged before the trainer resumed and redid this step
        self._log(record)
        if record["event"] == "task_end":
            self.log_new_probe_results()

    def log_new_probe_results(self) -> None:
        """Log each probe result in `RUN/probes/` not logged yet, where W&B keeps it: at the step this process
        is logging, or, before it has logged one, at the step after the last W&B holds (a resumed W&B run
        ignores steps at or below its last)."""
        for path in sorted(self.layout.probes.glob("*.json")):
            result = json.loads(path.read_text())
            if result["checkpoint"] not in self.state["probes"]:
                step = self.state["step"] if self.open_step == self.state["step"] else self.state["step"] + 1
                self._log({**result, "event": PROBE_EVENT, "step": max(step, 0)})
                self.state["probes"].append(result["checkpoint"])
                self._save_state()

    def close(self) -> None:
        if self.run is None:
            return
        self.log_new_probe_results()
        self.run.finish()
        self.run = None

    def _start(self, saved: dict[str, Any] | None) -> None:
        import wandb

        if self.run is not None:
            self.run.finish()
        self.state = saved or {"id": secrets.token_hex(8), "step": -1, "events": [], "probes": []}
        self._save_state()
        section = self.config.wandb
        group = section.group or default_group(self.config)
        labels = study_labels(self.config)
        self.run = wandb.init(
            project=section.project, entity=section.entity or None, group=group,
            name=section.name or f"{group}-seed{self.config.seed}", job_type=self.config.curriculum.problem,
            tags=[*section.tags, labels["size"], labels["problem"], f"seed{labels['seed']}"],
            config={**config_to_dict(self.config), "study": labels}, id=self.state["id"], resume="allow",
            mode=section.mode, dir=str(self.layout.root), settings=wandb.Settings(console="off"),
        )
        self.open_step = None
        self.run.define_metric(f"{PROBE_EVENT}/cycle")
        self.run.define_metric(f"{PROBE_EVENT}/*", step_metric=f"{PROBE_EVENT}/cycle")

    def _log(self, record: dict[str, Any]) -> None:
        step = record["step"]
        self.run.log(wandb_items(record), step=step)
        self.open_step = step
        if step != self.state["step"]:
            self.state["step"], self.state["events"] = step, []
        self.state["events"].append(record_key(record))
        self._save_state()

    def _save_state(self) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.layout.wandb_run, self.state)


# Offline runs: one `RUN/wandb/offline-run-<time>-<id>` folder per trainer attempt, synced in that order.
SYNC_IN_ORDER_SINCE = (0, 30)  # wandb's version whose `sync` orders a run's folders itself (and has no --append)


def offline_folders(layout: RunLayout) -> list[Path]:
    """The offline folders of the run's W&B run (wandb adds -1, -2 ... to a name taken in the same second), in
    the order the attempts wrote them: attempts never overlap (the run lock admits one trainer at a time)."""
    run_id = json.loads(layout.wandb_run.read_text())["id"]
    folders = [path.parent for path in layout.root.glob(f"wandb/offline-run-*-{run_id}*/run-{run_id}.wandb")]
    if not folders:
        raise FileNotFoundError(f"{layout.root / 'wandb'}: no offline-run-*-{run_id} folder of W&B run {run_id} "
                                f"(named in {layout.wandb_run})")
    return sorted(folders, key=lambda folder: (folder / f"run-{run_id}.wandb").stat().st_mtime)


def sync_commands(layout: RunLayout, wandb_version: str) -> list[list[str]]:
    """The `wandb sync` commands that upload every offline attempt of the run as one W&B run. wandb >= 0.30
    syncs the folders of one run one after another in order of start time; older versions replace the history
    with each folder (wandb #3841) unless the later ones are synced with `--append`, in time order."""
    folders = [str(folder) for folder in offline_folders(layout)]
    if tuple(int(part) for part in wandb_version.split(".")[:2]) >= SYNC_IN_ORDER_SINCE:
        return [["wandb", "sync", *folders]]
    run_id = json.loads(layout.wandb_run.read_text())["id"]
    return [["wandb", "sync", folders[0]], *(["wandb", "sync", "--append", "--id", run_id, folder]
                                             for folder in folders[1:])]
