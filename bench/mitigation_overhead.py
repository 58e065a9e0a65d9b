"""Cost of each mitigation on the trainer's steps/s, as the ratio of step times against no mitigation.

One task of `--steps` steps (1 process, ZeRO-1, 5M preset, seq 256, batch 8, fp32 on CPU) per setting, each
run by `plasticity-dist train` in a process of its own on the same data; a step's time is in metrics.jsonl and
includes the callbacks. Ratio = mean step time with the mitigation / mean without (warm-up steps left
out); ReDo's and Hare & Tortoise's every_steps are set to 10 so that their resets fall inside the run.
`--repeats R` runs the settings R times in turn and keeps each one's fastest run, so that load from other
processes on a shared machine, which only slows runs down, sways the ratios less; `--settings` picks some.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from plasticity_dist.study.config_files import config_to_yaml
from plasticity_dist.train.metrics import read_metrics
from trainer_overhead import bench_parser, one_task_config

WARMUP_STEPS = 3
SETTINGS = {  # name: overrides
    "none": [],
    "l2_init": ["mitigations.l2_init.enabled=true"],
    "redo": ["mitigations.redo.enabled=true", "mitigations.redo.every_steps=10"],
    "cbp": ["mitigations.cbp.enabled=true"],
    "nap": ["mitigations.nap.enabled=true"],
    "spectral_reg": ["mitigations.spectral_reg.enabled=true"],
    "snr": ["mitigations.snr.enabled=true"],
    "hare_tortoise": ["mitigations.hare_tortoise.enabled=true", "mitigations.hare_tortoise.every_steps=10"],
}


def mean_step_seconds(run_dir: Path, tokens_per_step: int) -> float:
    steps = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "step" and r["step"] > WARMUP_STEPS]
    return statistics.fmean(tokens_per_step / r["tokens_per_s"] for r in steps)


def main() -> None:
    parser = bench_parser(__doc__, steps=30)
    parser.add_argument("--settings", nargs="+", choices=[name for name in SETTINGS if name != "none"],
                        default=[name for name in SETTINGS if name != "none"], help="mitigations to time (and none)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each setting, in turn; the fastest counts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mitigations-"))
    config_path = work / "config.yaml"
    config_path.write_text(config_to_yaml(one_task_config(args, work, "diagnostics.enabled=false")))
    seconds: dict[str, list[float]] = {name: [] for name in ("none", *args.settings)}
    for repeat in range(args.repeats):
        for name in seconds:
            run_dir = work / f"{name}-{repeat}"
            subprocess.run([str(Path(sys.executable).parent / "plasticity-dist"), "train", "--config", str(config_path),
                            f"run_dir={run_dir}", *SETTINGS[name]], check=True, capture_output=True)
            seconds[name].append(mean_step_seconds(run_dir, args.batch * args.seq_len))
    print(f"preset: {args.preset} (seq {args.seq_len}, batch {args.batch}, fp32, cpu, {args.steps} steps per setting, "
          f"fastest of {args.repeats})")
    for name, values in seconds.items():
        print(f"{name}: mean_step_s {min(values):.4f} (runs {', '.join(f'{value:.4f}' for value in values)})  "
              f"ratio {min(values) / min(seconds['none']):.3f}")


if __name__ == "__main__":
    main()
