"""Trainer steps/s while a `local` probe runs on a separate CPU, against steps/s with no probe, same run.

One single-process run pinned to CPU 0, with the baseline probe (of the untrained weights) started by the
`local` executor at the beginning, pinned to CPU 1 (`probe.local_cpus`). Steps logged while the probe ran
are compared with steps logged after it finished (target ratio >= 0.9 with a core to spare).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="250K")
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("probe_async needs 2 CPUs: one for the trainer, one for the probe")
    work = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    seq_len, batch = 64, 16
    task_tokens = args.steps * seq_len * batch
    for lang, tokens in (("en", 2 * task_tokens), ("vi", task_tokens // 2)):
        subprocess.run([sys.executable, "-m", "plasticity_dist.cli", "preprocess", "--source", f"synthetic:{lang}",
                        "--out", str(work / lang), "--tokens", str(tokens), "--seq-len", str(seq_len),
                        "--val-tokens", "8192"], check=True, capture_output=True)
    run_dir = work / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train = [sys.executable, "-m", "plasticity_dist.cli", "train", "--config", str(REPO / "configs/continual-tiny.yaml"),
             f"run_dir={run_dir}", f"model.preset={args.preset}", f"data.root={work}", f"data.seq_len={seq_len}",
             f"data.micro_batch_size={batch}", f"data.global_batch_size={batch}", "curriculum.tasks=[{name: en}]",
             f"curriculum.task_tokens={task_tokens}", "curriculum.cycles=1", "log_every=1", "launch.zero_stage=1",
             "probe.enabled=true", "probe.dataset=vi", "probe.executor=local", "probe.local_cpus=[1]",
             f"probe.tokens={task_tokens // 3}", "probe.eval_points=3", "probe.eval_tokens=8192"]
    subprocess.run(["taskset", "-c", "0", *train], check=True, cwd=REPO, env=env, capture_output=True)

    probe = json.loads(next((run_dir / "probes").glob("step000000000-init.json")).read_text())
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["event"] == "step"][5:]  # skip warm-up
    during = [batch * seq_len / r["tokens_per_s"] for r in steps if probe["started_at"] < r["time"] < probe["finished_at"]]
    after = [batch * seq_len / r["tokens_per_s"] for r in steps if r["time"] > probe["finished_at"] + 1]
    if len(during) < 20 or len(after) < 20:
        raise SystemExit(f"too few steps to compare ({len(during)} during the probe, {len(after)} after); raise --steps")
    during_s, after_s = statistics.median(during), statistics.median(after)
    print(f"preset: {args.preset} (seq {seq_len}, batch {batch}); trainer on CPU 0, probe on CPU 1")
    print(f"steps_while_probing: {len(during)}, steps_after: {len(after)}")
    print(f"trainer_s_per_step_no_probe: {after_s:.4f}")
    print(f"trainer_s_per_step_with_probe: {during_s:.4f}")
    print(f"steps_per_s_ratio_with_vs_without_probe: {after_s / during_s:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
