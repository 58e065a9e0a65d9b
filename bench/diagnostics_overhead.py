"""Overhead of the plasticity diagnostics at their default interval on the trainer's steps/s (target <= 1 %).

One trainer run (1 process, ZeRO-1, 5M preset, seq 256, batch 8 on CPU) with diagnostics on at the
default `diagnostics.every_steps`; every step's time is in metrics.jsonl and includes the callbacks. The
baseline is the same run's unmeasured steps: overhead = mean time of all steps / mean time of the
unmeasured steps - 1, i.e. what leaving diagnostics on costs in steps/s.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from plasticity_dist.study.config import DiagnosticsSection
from plasticity_dist.train.metrics import read_metrics
from plasticity_dist.train.trainer import train
from trainer_overhead import one_task_config, parse_args

WARMUP_STEPS = 3


def main() -> None:
    args = parse_args(__doc__, steps=3 * DiagnosticsSection.every_steps)
    work = Path(tempfile.mkdtemp(prefix="bench-diagnostics-"))
    config = one_task_config(args, work, "diagnostics.enabled=true")
    train(config)
    metrics = read_metrics(work / "run" / "metrics.jsonl")
    measured = {r["step"] for r in metrics if r["event"] == "diagnostics"}
    tokens_per_step = args.batch * args.seq_len
    seconds = {r["step"]: tokens_per_step / r["tokens_per_s"] for r in metrics if r["event"] == "step"}
    steps = [step for step in seconds if step > WARMUP_STEPS]
    plain = [seconds[step] for step in steps if step not in measured]
    with_diagnostics = [seconds[step] for step in steps if step in measured]
    overhead = statistics.fmean(seconds[step] for step in steps) / statistics.fmean(plain) - 1
    print(f"preset: {args.preset} (seq {args.seq_len}, batch {args.batch}, fp32, cpu, {args.steps} steps, "
          f"diagnostics every {config.diagnostics.every_steps} steps: {len(measured)} measured)")
    print(f"unmeasured_step_s: {statistics.fmean(plain):.4f}")
    print(f"measured_step_s: {statistics.fmean(with_diagnostics):.4f}")
    print(f"measurement_cost_s: {statistics.fmean(with_diagnostics) - statistics.fmean(plain):.4f}")
    print(f"steps_per_s_ratio_with_vs_without_diagnostics: {1 / (1 + overhead):.4f}")
    print(f"diagnostics_overhead_pct: {100 * overhead:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
