"""Helpers for tests that build tiny datasets and launch the real trainer in fresh processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from plasticity_dist.cli import main as cli_main
from plasticity_dist.common.processes import free_port
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.engine.checkpoint import load_consolidated_weights
from plasticity_dist.study.config_files import config_to_yaml, load_config

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).parent / "accelerate"
TINY_CONFIG = REPO / "configs" / "continual-tiny.yaml"


def build_tiny_data(root: Path, languages: tuple[str, ...] = ("en", "zh", "vi"), tokens: int = 40_000) -> Path:
    """Synthetic shard datasets (with validation splits) made by the real preprocessing tool."""
    for lang in languages:
        status = cli_main([
            "preprocess", "--source", f"synthetic:{lang}", "--out", str(root / lang), "--tokens", str(tokens),
            "--seq-len", "32", "--val-tokens", "4096", "--workers", "1",
        ])
        assert status == 0
    return root


def tiny_overrides(data_root: Path, **extra: object) -> list[str]:
    """A 2-task, 1-cycle run of the 100K model: 32 steps per task at 8 x 32 tokens per step."""
    settings: dict[str, object] = {
        "model.preset": "100K", "data.root": data_root, "data.seq_len": 32, "data.micro_batch_size": 4,
        "data.global_batch_size": 8, "data.num_workers": 1, "data.val_tokens": 2048,
        "curriculum.tasks": "[{name: en}, {name: zh}]", "curriculum.task_tokens": 8192, "curriculum.cycles": 1,
        "log_every": 1, "probe.enabled": "false", "optimizer.warmup_steps": 5, "optimizer.lr": 3e-3,
        "checkpoint.every_steps": 0, "checkpoint.keep_last": 2,
    }
    settings.update({key.replace("__", "."): value for key, value in extra.items()})
    return [f"{key}={value}" for key, value in settings.items()]


# The probe tests' settings: 16 steps of 8 x 32 tokens on en, evaluated on 2048 tokens at steps 0, 8 and 16.
TINY_PROBE = {"probe__dataset": "en", "probe__tokens": 4096, "probe__eval_points": 3, "probe__eval_tokens": 2048,
              "probe__executor": "local"}


def reference_overrides(data_root: Path, **extra: object) -> list[str]:
    """The tiny run on 2 ranks with ZeRO-3 and, with probes off, the probe tests' settings: the config of
    `zero3_reference` (conftest.py) and of the runs compared with it. Its task ends evaluate the probe
    language on as many tokens as a probe does, so a probe's first point can be checked against them."""
    settings = {"launch__zero_stage": 3, **TINY_PROBE, "forgetting__val_tokens": TINY_PROBE["probe__eval_tokens"]}
    return tiny_overrides(data_root, **{**settings, **extra})


def train_command(run_dir: Path, overrides: list[str], processes: int) -> list[str]:
    cli = ["-m", "plasticity_dist.cli", "train", "--config", str(TINY_CONFIG), f"run_dir={run_dir}", *overrides]
    if processes == 1:
        return [sys.executable, *cli]
    return [str(ACCELERATE), "launch", "--config_file", str(REPO / "configs/accelerate/single_node.yaml"),
            "--num_processes", str(processes), "--main_process_port", str(free_port()), *cli]


def start_training(run_dir: Path, overrides: list[str], processes: int = 2) -> subprocess.Popen:
    log = open(run_dir.parent / f"{run_dir.name}.log", "ab")
    return subprocess.Popen(train_command(run_dir, overrides, processes), cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def train(run_dir: Path, overrides: list[str], processes: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(run_dir, overrides, processes), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def train_to_end(run_dir: Path, overrides: list[str], processes: int = 2) -> Path:
    """Train and require a clean exit (the log's tail is the failure message); returns the run directory."""
    finished = train(run_dir, overrides, processes)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return run_dir


def step_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("event") == "step"]


def wait_for(condition, timeout: float = 180, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill_process_group(process: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
    """Kill a launcher's process group and every rank it started (ranks live in sessions of their own, so
    killing the group alone leaves them training and holding the run's lock), and wait until all are gone."""
    tree = process_tree(process.pid)
    os.killpg(process.pid, signum)
    signal_pids(tree, signum)
    process.wait(timeout=60)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in tree),
             timeout=60, what="the killed ranks to exit")


def _state(pid: int) -> str:
    """A process's state letter from /proc (Z: a zombie, already dead), or "Z" when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "Z"


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (launchers start their ranks in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, frontier = [], [pid]
    while frontier:
        tree.append(frontier.pop())
        frontier.extend(children.get(tree[-1], []))
    return tree


def signal_process_tree(process: subprocess.Popen, signum: int) -> None:
    signal_pids(process_tree(process.pid), signum)


def signal_pids(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # a short-lived child (a compiler, a shell) ended since the listing
            pass


def latest_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()


def copy_for_probing(run_dir: Path, dest: Path, probe_overrides: list[str]) -> Path:
    """A copy of a finished run in `dest` (without its probes) whose config.yaml takes `probe_overrides`;
    returns the copy's last checkpoint, the one to probe."""
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("probes"))
    config = RunLayout(dest).config
    config.write_text(config_to_yaml(load_config(config, probe_overrides)))
    return latest_checkpoint(dest)


def probe_result(checkpoint: Path) -> dict:
    """The result file of the probe of `checkpoint`."""
    return json.loads(RunLayout.of_checkpoint(checkpoint).probe_result(checkpoint.name).read_text())


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_consolidated_weights(latest_checkpoint(run_dir), expected_keys=[])


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
