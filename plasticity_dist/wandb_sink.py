"""Weights & Biases, optional (`wandb.enabled=true`): the main process logs every `metrics.jsonl` record to one
W&B run per run directory, and every probe result once the trainer sees it. Only this module imports `wandb`,
and it is imported only when W&B is on.

- The W&B run's id is kept in `RUN/wandb_run.json`, so a resumed trainer continues the same W&B run (online it
  resumes it; offline it writes another `RUN/wandb/offline-run-*` folder under the same id, which `wandb sync`
  appends). A run started over (no checkpoint to resume from) starts a new W&B run, as `metrics.jsonl` starts
  over.
- W&B's step is the optimizer step, and W&B takes no step twice. A resumed trainer redoes the steps after its
  checkpoint, whose records W&B already holds (the same numbers: resume is exact), so records up to the last
  logged position (step and the events logged at it), kept beside the id, are not sent again.
- Probe results are logged by the trainer, at task ends and when it closes, each once: a probe runs beside the
  trainer or on another node while the trainer logs, and a W&B run takes one writer. A result that arrives
  after the trainer has exited is logged when the run is next resumed.
- Runs are grouped as the report groups replicates: by default the W&B group is `<size>-<problem>` plus the
  run's mitigations, and the name adds `seed<seed>`; size, problem, mitigations and seed are also config keys
  (`study.*`) and tags, to group a sweep by any of them.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from plasticity_dist.analysis.mitigations import active_mitigations
from plasticity_dist.config import ExperimentConfig, config_to_dict
from plasticity_dist.fileio import atomic_write_json
from plasticity_dist.run_layout import RunLayout

PROBE_EVENT = "probe"


def study_labels(config: ExperimentConfig) -> dict[str, Any]:
    """What a sweep is grouped by: model size, problem, mitigations (with their settings) and seed."""
    return {"size": config.model.preset, "problem": config.curriculum.problem,
            "mitigations": "+".join(active_mitigations(config)) or "none", "seed": config.seed}


def default_group(config: ExperimentConfig) -> str:
    """`<size>-<problem>[-<mitigations>]`: runs that differ only in their seed share a group."""
    labels = study_labels(config)
    mitigations = "" if labels["mitigations"] == "none" else f"-{labels['mitigations']}"
    return f"{labels['size']}-{labels['problem']}{mitigations}"


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


class WandbSink:
    """The W&B run of one run directory, fed the records `MetricsLog` writes."""

    def __init__(self, config: ExperimentConfig, layout: RunLayout) -> None:
        self.config = config
        self.layout = layout
        self.run: Any = None
        self.state: dict[str, Any] = {}  # id, last logged step and events at it, logged probe results

    def truncate_after(self, step: int) -> None:
        """The trainer (re)starts after `step`: -1 starts a new W&B run, a checkpoint's step continues the
        saved one."""
        saved = self.layout.wandb_run
        keep = step >= 0 and saved.is_file()
        self._start(json.loads(saved.read_text()) if keep else None)

    def write(self, record: dict[str, Any]) -> None:
        if self.run is None:
            self._start(None)
        step, event = record["step"], record["event"]
        if step < self.state["step"] or (step == self.state["step"] and event in self.state["events"]):
            return  # logged before the trainer resumed and redid this step
        self._log(record)
        if event == "task_end":
            self.log_new_probe_results()

    def log_new_probe_results(self) -> None:
        """Log each probe result in `RUN/probes/` not logged yet, at the current step."""
        for path in sorted(self.layout.probes.glob("*.json")):
            result = json.loads(path.read_text())
            if result["checkpoint"] not in self.state["probes"]:
                self._log({**result, "event": PROBE_EVENT, "step": max(self.state["step"], 0)})
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

    def _log(self, record: dict[str, Any]) -> None:
        step = record["step"]
        self.run.log(wandb_items(record), step=step)
        if step != self.state["step"]:
            self.state["step"], self.state["events"] = step, []
        self.state["events"].append(record["event"])
        self._save_state()

    def _save_state(self) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.layout.wandb_run, self.state)
