"""`plasticity-dist control` (`make control`): the studies of the control problem, where plasticity loss shows on a CPU.

One 64K-token chunk of byte-level text under a fresh token permutation per task (`curriculum.problem=control`,
configs/control.yaml). A study is data (configs/control-studies.yaml): groups of sizes x treatments x seeds, a
treatment being mitigations or one value of a swept setting. `onset` (the default, `make control`) trains the
control sizes under two seeds and the smallest again with a mitigation, so the report's mitigation comparison sees
whether it delays the onset, each probe the mean over 4 probe permutations; `sizes` trains the larger sizes on
until their onsets show, for the scaling fit; `scaling` is the same design at a higher LR with single probes, where
the onsets come before the first probe; `ranking` runs every mitigation and a weight-decay sweep at one size under
three seeds. Every run trains in a process of its own on one core (as many at once as there are cores), its probes run
inline after each cycle; then the report. README "Control problem" holds the measured settings and results.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plasticity_dist.common.logging import get_logger
from plasticity_dist.data.preprocess import PreprocessArgs, preprocess
from plasticity_dist.report.markdown import write_report
from plasticity_dist.study.config_files import load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTROL_CONFIG = REPO_ROOT / "configs" / "control.yaml"
STUDIES = REPO_ROOT / "configs" / "control-studies.yaml"
CHUNK_TOKENS = 65_536  # the text every task permutes: the `en` dataset is preprocessed at this size
PROBE_DATA_TOKENS = 524_288  # the probe language's training data (a probe reads 307,200 of it)
VAL_TOKENS = 8_192
NO_TREATMENT = "none"

log = get_logger()


@dataclass(frozen=True)
class Study:
    """A study of configs/control-studies.yaml: its default output folder and its runs as (name, overrides of
    configs/control.yaml)."""

    name: str
    out: Path
    runs: list[tuple[str, list[str]]]


def _treatments(group: dict[str, Any]) -> dict[str, list[str]]:
    """A group's treatments: label -> overrides, one per value of its `sweep` after the named ones."""
    treatments = dict(group.get("treatments") or {NO_TREATMENT: []})
    sweep = group.get("sweep")
    if sweep:
        setting = sweep["key"].rsplit(".", 1)[-1]
        treatments |= {f"{setting}-{value:g}" if isinstance(value, float) else f"{setting}-{value}":
                       [f"{sweep['key']}={value}", f"sweep={sweep['key']}"] for value in sweep["values"]}
    return treatments


def load_study(name: str, path: Path = STUDIES) -> Study:
    """Study `name` of the plans in `path`: each group's sizes x treatments x seeds, in that order, each run under
    the study's overrides, then its group's, then its treatment's."""
    plans = yaml.safe_load(path.read_text())
    if name not in plans:
        raise ValueError(f"--study {name}: not a study of {path}; its studies: {', '.join(plans)}")
    plan = plans[name]
    runs = []
    for group in plan["groups"]:
        for size in group["sizes"]:
            for label, overrides in _treatments(group).items():
                prefix = size if label == NO_TREATMENT else f"{size}-{label}"
                runs += [(f"{prefix}-seed{seed}", [f"model.preset={size}", f"seed={seed}", f"data.seed={seed}",
                                                   f"curriculum.control.permutation_seed={seed}",
                                                   *plan.get("overrides", []), *group.get("overrides", []),
                                                   *overrides])
                         for seed in group["seeds"]]
    for run_name, overrides in runs:
        load_config(CONTROL_CONFIG, overrides)  # a bad override fails here, naming its key, before any training
    return Study(name, Path(plan["out"]), runs)


def _prepare_data(data_root: Path, seq_len: int) -> None:
    for lang, tokens in (("en", CHUNK_TOKENS), ("vi", PROBE_DATA_TOKENS)):
        if not (data_root / lang / "manifest.json").is_file():
            log.info(f"preprocess {lang}: plasticity-dist preprocess --source synthetic:{lang} --out {data_root / lang} "
                     f"--tokens {tokens} --seq-len {seq_len} --val-tokens {VAL_TOKENS}")
            preprocess(PreprocessArgs(f"synthetic:{lang}", tokens, seq_len=seq_len, val_tokens=VAL_TOKENS), data_root / lang)


def _train(run_dir: Path, overrides: list[str]) -> None:
    """One run in its own process on one core; its log beside the run directory."""
    command = [sys.executable, "-m", "plasticity_dist.cli", "train", "--config", str(CONTROL_CONFIG),
               f"run_dir={run_dir}", *overrides]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    log.info(f"train {run_dir.name}: {' '.join(command[1:])}")
    started = time.monotonic()
    with open(run_dir.parent / f"{run_dir.name}.log", "a") as run_log:  # a resumed run adds to its log
        finished = subprocess.run(command, cwd=REPO_ROOT, env=environment, stdout=run_log, stderr=subprocess.STDOUT,
                                  check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"control run {run_dir.name} failed (exit code {finished.returncode}); "
                           f"see {run_dir.parent / f'{run_dir.name}.log'}")
    log.info(f"train {run_dir.name}: done in {time.monotonic() - started:.0f} s")


def run_control(study: Study, out: Path | None = None, cycles: int | None = None, jobs: int | None = None,
                only: Sequence[str] = ()) -> Path:
    """Run `study` into `out` (default: the study's; data, runs, report) and return the report folder. `only`:
    train just these runs (a study in pieces; a finished run is not trained again, so a last call without `only`
    writes the report over them all)."""
    unknown = sorted(set(only) - {name for name, _ in study.runs})
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: not a run of the {study.name} study; its runs: "
                         f"{', '.join(name for name, _ in study.runs)}")
    out = (out or study.out).resolve()
    config = load_config(CONTROL_CONFIG)
    data_root = out / "data"
    _prepare_data(data_root, config.data.seq_len)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    shared = [f"data.root={data_root}", *([f"curriculum.cycles={cycles}"] if cycles else [])]
    runs = [(out / "runs" / name, [*overrides, *shared]) for name, overrides in study.runs]
    to_train = [(run_dir, overrides) for run_dir, overrides in runs if not only or run_dir.name in only]
    jobs = jobs or len(os.sched_getaffinity(0))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads wait on processes: one process per core
        for finished in [pool.submit(_train, run_dir, overrides) for run_dir, overrides in to_train]:
            finished.result()
    log.info(f"{len(to_train)} runs in {time.monotonic() - started:.0f} s on {jobs} processes at a time")
    if only:
        return out / "report"
    report_dir = out / "report"
    write_report([str(run_dir) for run_dir, _ in runs], report_dir)
    log.info(f"report: {report_dir / 'report.md'}")
    return report_dir
