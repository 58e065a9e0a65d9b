"""A probe's tokens/s on the new path (a run of its own through the trainer's machinery) against the old probe
loop (a bare loop of step runner and fixed-point validation, as probe/job.py was before 048770a), on the same
checkpoint and in the same bench run (target ratio >= 0.95); then the time from a SIGKILL of a probe to its
first new step on resume.

Every probe runs in a process of its own (accelerate allows one DeepSpeed Accelerator per process), with one
CPU thread as the `local` executor gives probes; the two paths alternate `--repeats` times and the best of
each is compared. End-to-end tokens/s is the probe's token budget over the whole process (start-up, step-0
and fixed-point validation, checkpoints, result), per wall second and per CPU second of the process and its
DataLoader workers (the CPU figure holds on a machine that other work shares); the loop figure is the median
wall time of a training step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from plasticity_dist.study.config_files import config_to_yaml, load_config

REPO = Path(__file__).resolve().parent.parent
# DeepSpeed's JIT op is built once into this environment's own folder (as the tests do): a shared
# ~/.cache/torch_extensions that other environments rebuild would put a compile into some of the timings.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
              "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))}


def old_probe_loop(checkpoint: Path) -> dict[str, Any]:
    """The probe loop before probes were runs: load the checkpoint's weights, a fresh AdamW at the probe's
    constant LR, train on the probe language and validate at the fixed points; no checkpoints, no resume."""
    import dataclasses

    from plasticity_dist.probe.auc import curve_auc
    from plasticity_dist.engine.checkpoint import load_consolidated_weights
    from plasticity_dist.engine.checkpoint_files import read_trainer_state
    from plasticity_dist.study.config_files import load_config
    from plasticity_dist.study.curriculum import dataset_path
    from plasticity_dist.data.loader import ShardLoader, iter_eval_batches
    from plasticity_dist.engine.validation import eval_steps
    from plasticity_dist.engine.launch import build_accelerator, init_world_env
    from plasticity_dist.train.lr_schedule import learning_rate
    from plasticity_dist.model.gpt import GPT
    from plasticity_dist.model.presets import get_preset
    from plasticity_dist.engine.steps import StepRunner

    config = load_config(checkpoint.parent.parent / "config.yaml")
    world = init_world_env()
    accelerator = build_accelerator(config, world)
    probe_dir = dataset_path(config.data.root, config.probe.dataset)
    data = config.data
    loader = ShardLoader(
        [probe_dir], seq_len=data.seq_len, micro_batch_size=data.micro_batch_size,
        global_batch_size=data.global_batch_size, token_budget=config.probe.tokens, rank=world.rank,
        world_size=world.world_size, seed=data.seed, task=0, num_workers=data.num_workers,
        tokenizer=read_trainer_state(checkpoint)["tokenizer"],
    )
    model = GPT(get_preset(config.model.preset).gpt_config(loader.vocab_size, data.seq_len))
    model.load_state_dict(load_consolidated_weights(checkpoint, list(model.state_dict())))
    step_runner = StepRunner(accelerator, model, config, config.data.batch_plan(world.world_size).accum_steps)
    optimizer = dataclasses.replace(config.optimizer, lr=config.probe.lr, schedule="constant")

    def validation_loss() -> float:
        return step_runner.evaluate(iter_eval_batches(Path(probe_dir) / "val", seq_len=data.seq_len,
                                                      batch_size=data.micro_batch_size,
                                                      max_tokens=config.probe.eval_tokens))

    tokens_per_step = data.global_batch_size * data.seq_len
    points = eval_steps(loader.num_steps, config.probe.eval_points, config.probe.eval_spacing)
    curve_tokens, curve_losses = [0], [validation_loss()]
    step_seconds = []
    batches = iter(loader)
    for step in range(loader.num_steps):
        started = time.perf_counter()
        step_runner.train_step(batches, learning_rate(optimizer, step, step, loader.num_steps))
        step_seconds.append(time.perf_counter() - started)
        if step + 1 in points:
            curve_tokens.append((step + 1) * tokens_per_step)
            curve_losses.append(validation_loss())
    return {"auc": curve_auc(curve_tokens, curve_losses, config.probe.eval_spacing), "val_losses": curve_losses,
            "step_seconds": step_seconds}


def make_checkpoint(work: Path, args: argparse.Namespace) -> Path:
    """Data for a short training run (en) and the probe (vi), and the run's last checkpoint; the run's config
    holds the probe settings every probe here uses."""
    tokens_per_step = args.batch * args.seq_len
    probe_tokens = args.steps * tokens_per_step
    for lang, tokens in (("en", 4 * tokens_per_step), ("vi", probe_tokens)):
        subprocess.run([sys.executable, "-m", "plasticity_dist.cli", "preprocess", "--source", f"synthetic:{lang}",
                        "--out", str(work / lang), "--tokens", str(2 * tokens), "--seq-len", str(args.seq_len),
                        "--val-tokens", str(args.eval_tokens)], check=True, capture_output=True, cwd=REPO)
    run_dir = work / "run"
    subprocess.run([sys.executable, "-m", "plasticity_dist.cli", "train", "--config",
                    str(REPO / "configs/continual-tiny.yaml"), f"run_dir={run_dir}", f"model.preset={args.preset}",
                    f"data.root={work}", f"data.seq_len={args.seq_len}", f"data.micro_batch_size={args.batch}",
                    f"data.global_batch_size={args.batch}", "curriculum.tasks=[{name: en}]",
                    f"curriculum.task_tokens={2 * tokens_per_step}", "curriculum.cycles=1", "log_every=1",
                    "launch.zero_stage=1", "launch.precision=fp32", "probe.enabled=false", "probe.dataset=vi",
                    f"probe.tokens={probe_tokens}", f"probe.eval_points={args.eval_points}",
                    f"probe.eval_tokens={args.eval_tokens}", "forgetting.enabled=false",
                    "diagnostics.enabled=false", "early_warning.enabled=false"],
                   check=True, capture_output=True, cwd=REPO, env=ONE_THREAD)
    return run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()


def probe_command(checkpoint: Path, config: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "plasticity_dist.cli", "probe", "--checkpoint", str(checkpoint)]
    return command + (["--config", str(config)] if config else [])


def step_records(metrics: Path) -> list[dict[str, Any]]:
    """The step records of a probe run's metrics.jsonl so far (a line still being written is left out)."""
    lines = metrics.read_text().split("\n")[:-1] if metrics.is_file() else []
    return [record for record in map(json.loads, lines) if record["event"] == "step"]


def timed(command: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `command` to completion: its result, wall seconds and CPU seconds (with every process it waited for)."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO, env=ONE_THREAD)
    wall_s = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return finished, wall_s, cpu_s


def run_new_path(checkpoint: Path) -> dict[str, Any]:
    """One probe through `plasticity-dist probe`, from nothing: wall and CPU seconds, step seconds, the result."""
    probes = checkpoint.parent.parent / "probes"
    shutil.rmtree(probes, ignore_errors=True)
    _, wall_s, cpu_s = timed(probe_command(checkpoint))
    result = json.loads((probes / f"{checkpoint.name}.json").read_text())
    records = step_records(probes / checkpoint.name / "metrics.jsonl")
    return {"wall_s": wall_s, "cpu_s": cpu_s, "auc": result["auc"], "val_losses": result["val_losses"],
            "step_seconds": [record["tokens"] / record["step"] / record["tokens_per_s"] for record in records]}


def run_old_loop(checkpoint: Path) -> dict[str, Any]:
    """One probe through `old_probe_loop`, in a process of its own started the same way."""
    finished, wall_s, cpu_s = timed([sys.executable, __file__, "--old-loop", str(checkpoint)])
    return {"wall_s": wall_s, "cpu_s": cpu_s, **json.loads(finished.stdout.strip().splitlines()[-1])}


def kill_to_first_new_step(checkpoint: Path, every_steps: int) -> dict[str, float]:
    """Start a probe that checkpoints every `every_steps`, SIGKILL it just after its first checkpoint, start it
    again: seconds from the kill to the first step past that checkpoint, and from a fresh start to step 1."""
    run_dir = checkpoint.parent.parent
    shutil.rmtree(run_dir / "probes", ignore_errors=True)
    config = run_dir / "config-resume.yaml"
    config.write_text(config_to_yaml(load_config(run_dir / "config.yaml",
                                                 [f"probe.checkpoint_every_steps={every_steps}"])))
    probe_run = run_dir / "probes" / checkpoint.name
    latest, metrics = probe_run / "checkpoints" / "latest", probe_run / "metrics.jsonl"
    launched = time.time()
    process = subprocess.Popen(probe_command(checkpoint, config), cwd=REPO, env=ONE_THREAD, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not latest.is_file():
        if process.poll() is not None:
            raise SystemExit("the probe ended before its first checkpoint; raise --steps")
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    killed = time.time()
    process.wait()
    first_step = step_records(metrics)[0]["time"]
    saved = int(latest.read_text()[4:13])
    lost = max(record["step"] for record in step_records(metrics)) - saved
    process = subprocess.Popen(probe_command(checkpoint, config), cwd=REPO, env=ONE_THREAD,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        new_steps = [r["time"] for r in step_records(metrics) if r["step"] > saved and r["time"] > killed]
        if new_steps or process.poll() is not None:
            break
        time.sleep(0.01)
    process.wait()
    if not new_steps:
        raise SystemExit("the resumed probe ended without a new step")
    return {"kill_to_first_new_step_s": min(new_steps) - killed, "start_to_first_step_s": first_step - launched,
            "checkpoint_step": saved, "steps_redone": lost}


def best(runs: list[dict[str, Any]], tokens: int) -> tuple[float, float, float]:
    """The best end-to-end tokens per wall and per CPU second, and the best median step time (warm-up steps
    left out), of several runs."""
    return (max(tokens / run["wall_s"] for run in runs), max(tokens / run["cpu_s"] for run in runs),
            min(statistics.median(run["step_seconds"][3:]) for run in runs))


def seconds(runs: list[dict[str, Any]], key: str) -> str:
    return ", ".join(f"{run[key]:.2f}" for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="5M")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60, help="probe steps (probe.tokens = steps x batch x seq)")
    parser.add_argument("--eval-points", type=int, default=5)
    parser.add_argument("--eval-tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--old-loop", metavar="CHECKPOINT", help=argparse.SUPPRESS)  # the baseline's own process
    args = parser.parse_args()
    if args.old_loop:
        print(json.dumps(old_probe_loop(Path(args.old_loop))))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-probe-overhead-"))
    checkpoint = make_checkpoint(work, args)
    old_runs, new_runs = [], []
    for _ in range(args.repeats):
        old_runs.append(run_old_loop(checkpoint))
        new_runs.append(run_new_path(checkpoint))
    tokens = args.steps * args.batch * args.seq_len
    old_tokens_per_s, old_tokens_per_cpu_s, old_step_s = best(old_runs, tokens)
    new_tokens_per_s, new_tokens_per_cpu_s, new_step_s = best(new_runs, tokens)
    print(f"preset: {args.preset} (seq {args.seq_len}, batch {args.batch}, fp32, cpu, 1 thread, {args.steps} steps, "
          f"{args.eval_points} eval points, best of {args.repeats})")
    for key in ("wall_s", "cpu_s"):
        print(f"old_loop_{key}: {seconds(old_runs, key)}")
        print(f"new_path_{key}: {seconds(new_runs, key)}")
    print(f"old_loop_tokens_per_s: {old_tokens_per_s:.0f}")
    print(f"new_path_tokens_per_s: {new_tokens_per_s:.0f}")
    print(f"tokens_per_s_ratio_new_vs_old: {new_tokens_per_s / old_tokens_per_s:.3f} (target >= 0.95)")
    print(f"old_loop_tokens_per_cpu_s: {old_tokens_per_cpu_s:.0f}")
    print(f"new_path_tokens_per_cpu_s: {new_tokens_per_cpu_s:.0f}")
    print(f"tokens_per_cpu_s_ratio_new_vs_old: {new_tokens_per_cpu_s / old_tokens_per_cpu_s:.3f} (target >= 0.95)")
    print(f"old_loop_s_per_step: {old_step_s:.4f}")
    print(f"new_path_s_per_step: {new_step_s:.4f}")
    print(f"step_ratio_new_vs_old: {old_step_s / new_step_s:.3f}")
    same = old_runs[0]["val_losses"] == new_runs[0]["val_losses"]
    print(f"auc_old: {old_runs[0]['auc']:.6f}, auc_new: {new_runs[0]['auc']:.6f} (same curve: {same})")
    resume = kill_to_first_new_step(checkpoint, every_steps=max(1, args.steps // 3))
    print(f"checkpoint_step: {resume['checkpoint_step']}, steps_redone: {resume['steps_redone']}")
    print(f"kill_to_first_new_step_s: {resume['kill_to_first_new_step_s']:.2f}")
    print(f"fresh_start_to_first_step_s: {resume['start_to_first_step_s']:.2f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
