"""`plasticity-dist control` (`make control`): the control study, where plasticity loss shows on a CPU.

One 64K-token chunk of byte-level text under a fresh token permutation per task (`curriculum.problem=control`,
configs/control.yaml), the control sizes under two seeds each, and the smallest size again with a mitigation, so
the report's mitigation comparison sees whether it delays the onset. Every run trains in a process of its own on one
core (as many at once as there are cores), its probes run inline after each cycle; then the report. README
"Control problem" holds the measured settings and results.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from plasticity_dist.common.logging import get_logger
from plasticity_dist.data.preprocess import PreprocessArgs, preprocess
from plasticity_dist.report.markdown import write_report
from plasticity_dist.study.config_files import load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTROL_CONFIG = REPO_ROOT / "configs" / "control.yaml"
CHUNK_TOKENS = 65_536  # the text every task permutes: the `en` dataset is preprocessed at this size
PROBE_DATA_TOKENS = 524_288  # the probe language's training data (a probe reads 307,200 of it)
VAL_TOKENS = 8_192
SEEDS = (0, 1)
SIZES = ("12.4K", "28K", "50K")
# (label, overrides) of the mitigation run of the smallest size, under every seed. L2 Init at 1e-3 kept 12.4K's probe
# AUC flat over 40 tasks (+0.0 % at task 40 against +31 % without); shrink-and-perturb (0.8, noise 1e-2) did not
# (README table)
MITIGATION = ("l2-init", ("mitigations.l2_init.enabled=true", "mitigations.l2_init.weight=1e-3"))

log = get_logger()


def control_runs(sizes: Sequence[str] = SIZES, seeds: Sequence[int] = SEEDS) -> list[tuple[str, list[str]]]:
    """(run name, config overrides) of every run of the study: each size under each seed, then the smallest size
    with the mitigation under each seed. A seed sets the weights, the data order and the permutations."""
    def seeded(seed: int) -> list[str]:
        return [f"seed={seed}", f"data.seed={seed}", f"curriculum.control.permutation_seed={seed}"]

    runs = [(f"{size}-seed{seed}", [f"model.preset={size}", *seeded(seed)]) for size in sizes for seed in seeds]
    label, overrides = MITIGATION
    runs += [(f"{sizes[0]}-{label}-seed{seed}", [f"model.preset={sizes[0]}", *seeded(seed), *overrides])
             for seed in seeds]
    return runs


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


def run_control(out: Path, cycles: int | None = None, jobs: int | None = None, only: Sequence[str] = ()) -> Path:
    """Run the control study into `out` (data, runs, report) and return the report folder. `only`: train just
    these runs (a study in pieces; a finished run is not trained again, so a last call without `only` writes the
    report over them all)."""
    planned = control_runs()
    unknown = sorted(set(only) - {name for name, _ in planned})
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: not a run of the control study; its runs: "
                         f"{', '.join(name for name, _ in planned)}")
    out = out.resolve()
    config = load_config(CONTROL_CONFIG)
    data_root = out / "data"
    _prepare_data(data_root, config.data.seq_len)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    shared = [f"data.root={data_root}", *([f"curriculum.cycles={cycles}"] if cycles else [])]
    runs = [(out / "runs" / name, [*overrides, *shared]) for name, overrides in planned]
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
