"""Cost of each mitigation on the trainer's steps/s, as the ratio of step times against no mitigation.

One task of `--steps` steps (1 process, ZeRO-1, 5M preset, seq 256, batch 8, fp32 on CPU) per setting, each
run by `plasticity-dist train` in a process of its own on the same data; a step's time is in metrics.jsonl and
includes the callbacks. Ratio = mean step time with the mitigation / mean without (warm-up steps left
out); ReDo's every_steps is set to 10 so that its measurement and resets fall inside the run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from plasticity_dist.study.config_files import config_to_yaml
from plasticity_dist.train.metrics import read_metrics
from trainer_overhead import one_task_config, parse_args

WARMUP_STEPS = 3
SETTINGS = {  # name: overrides
    "none": [],
    "l2_init": ["mitigations.l2_init.enabled=true"],
    "redo": ["mitigations.redo.enabled=true", "mitigations.redo.every_steps=10"],
    "cbp": ["mitigations.cbp.enabled=true"],
    "nap": ["mitigations.nap.enabled=true"],
    "spectral_reg": ["mitigations.spectral_reg.enabled=true"],
    "snr": ["mitigations.snr.enabled=true"],
}


def mean_step_seconds(run_dir: Path, tokens_per_step: int) -> float:
    steps = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "step" and r["step"] > WARMUP_STEPS]
    return statistics.fmean(tokens_per_step / r["tokens_per_s"] for r in steps)


def main() -> None:
    args = parse_args(__doc__, steps=30)
    work = Path(tempfile.mkdtemp(prefix="bench-mitigations-"))
    config_path = work / "config.yaml"
    config_path.write_text(config_to_yaml(one_task_config(args, work, "diagnostics.enabled=false")))
    seconds = {}
    for name, overrides in SETTINGS.items():
        subprocess.run([str(Path(sys.executable).parent / "plasticity-dist"), "train", "--config", str(config_path),
                        f"run_dir={work / name}", *overrides], check=True, capture_output=True)
        seconds[name] = mean_step_seconds(work / name, args.batch * args.seq_len)
    print(f"preset: {args.preset} (seq {args.seq_len}, batch {args.batch}, fp32, cpu, {args.steps} steps per setting)")
    for name, value in seconds.items():
        print(f"{name}: mean_step_s {value:.4f}  ratio {value / seconds['none']:.3f}")


if __name__ == "__main__":
    main()
