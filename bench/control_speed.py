"""The control problem's trainer against a bare PyTorch loop on the same model, batches and data, one process.

The trainer runs `configs/control.yaml` (probes off) for a few permuted tasks; its time is from its first step
record to its last, so task ends (validation, checkpoint) and task starts (a new loader) count. The bare loop is
Adam at the same LR on the same permuted batches (the trainer's loader), one `loss.backward(); step()` per batch,
nothing at task ends, timed before and after the trainer, the faster of the two kept (on a shared machine the
other's load comes and goes). Prints both as tokens/s and their ratio (issue 27's target: >= 0.8 at the smallest
size).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: one core, as each control run gets

import torch  # noqa: E402

from plasticity_dist.cli import main as cli_main  # noqa: E402
from plasticity_dist.control import CONTROL_CONFIG  # noqa: E402
from plasticity_dist.data.loader import task_loader  # noqa: E402
from plasticity_dist.study.config_files import load_config  # noqa: E402
from plasticity_dist.study.curriculum import build_tasks  # noqa: E402
from plasticity_dist.train.build import build_model  # noqa: E402
from plasticity_dist.train.trainer import train  # noqa: E402


def bare_loop_seconds(config) -> float:
    """Seconds of a plain Adam loop over every task's batches, from the end of its first step to its last."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, 257, config.data.seq_len)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optimizer.lr, betas=tuple(config.optimizer.betas))
    plan = config.data.batch_plan(1)
    started = None
    for task in build_tasks(config):
        with task_loader(task, config.data, plan, 0, None) as loader:
            for inputs, targets in loader:
                model(inputs, targets).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                started = started or time.perf_counter()
    return time.perf_counter() - started


def trainer_seconds(run_dir: Path) -> tuple[float, int]:
    """From the first step record to the last, and the steps between them."""
    steps = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["event"] == "step"]
    return steps[-1]["time"] - steps[0]["time"], steps[-1]["step"] - steps[0]["step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="12.4K")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--zero-stage", type=int, default=load_config(CONTROL_CONFIG).launch.zero_stage,
                        help="launch.zero_stage (default: the control config's)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-control-"))
    base = load_config(CONTROL_CONFIG)
    chunk = 65536
    assert cli_main(["preprocess", "--source", "synthetic:en", "--out", str(work / "data" / "en"), "--tokens",
                     str(chunk), "--seq-len", str(base.data.seq_len), "--val-tokens", "8192", "--workers", "1"]) == 0
    overrides = [f"run_dir={work / 'run'}", f"model.preset={args.preset}", f"data.root={work / 'data'}",
                 "curriculum.cycles=1", f"curriculum.control.tasks_per_cycle={args.tasks}", "probe.enabled=false",
                 "log_every=1", f"launch.zero_stage={args.zero_stage}"]
    config = load_config(CONTROL_CONFIG, overrides)
    bare_before = bare_loop_seconds(config)
    assert train(config) == 0
    bare_s = min(bare_before, bare_loop_seconds(config))
    run_s, run_steps = trainer_seconds(work / "run")
    tokens_per_step = config.data.global_batch_size * config.data.seq_len
    steps = len(build_tasks(config)) * config.curriculum.task_tokens // tokens_per_step - 1
    assert run_steps == steps, (run_steps, steps)
    bare_rate, trainer_rate = steps * tokens_per_step / bare_s, steps * tokens_per_step / run_s
    print(f"preset: {args.preset} ({args.tasks} permuted tasks of {steps // args.tasks} steps, batch "
          f"{config.data.global_batch_size} x {config.data.seq_len}, fp32, cpu, 1 process, ZeRO stage "
          f"{config.launch.zero_stage}, OMP_NUM_THREADS="
          f"{os.environ['OMP_NUM_THREADS']})")
    print(f"bare_loop_tokens_per_s: {bare_rate:,.0f}")
    print(f"trainer_tokens_per_s: {trainer_rate:,.0f}")
    print(f"tokens_per_s_ratio_trainer_vs_bare: {trainer_rate / bare_rate:.3f} (target >= 0.8)")


if __name__ == "__main__":
    main()
