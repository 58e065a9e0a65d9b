"""Full trainer (1 process, DeepSpeed ZeRO-1) against a bare PyTorch loop on the same model, batches and data.

Prints per-step times of both and their ratio as steps/s (target >= 0.90 on CPU for the 5M preset at
seq 256), then checkpoint save + load through the trainer's Checkpointer against torch.save/torch.load of
the same model and optimizer state (target <= 2x).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from plasticity_dist.cli import main as cli_main
from plasticity_dist.data.loader import ShardLoader
from plasticity_dist.engine.steps import adamw_param_groups
from plasticity_dist.model.gpt import GPT
from plasticity_dist.model.presets import get_preset
from plasticity_dist.study.config_files import load_config
from plasticity_dist.train.trainer import Trainer


def bare_loop_step_times(config, dataset: Path, steps: int) -> list[float]:
    """nanoGPT-style loop: forward, backward, clip, AdamW step; batches from the same shards."""
    torch.manual_seed(config.seed)
    model = GPT(get_preset(config.model.preset).gpt_config(257, config.data.seq_len))
    optimizer = torch.optim.AdamW(adamw_param_groups(model, config.optimizer.weight_decay), lr=config.optimizer.lr,
                                  betas=tuple(config.optimizer.betas))
    loader = ShardLoader([dataset], seq_len=config.data.seq_len, micro_batch_size=config.data.micro_batch_size,
                         global_batch_size=config.data.global_batch_size, token_budget=config.curriculum.task_tokens,
                         rank=0, world_size=1, seed=config.data.seed, task=0, num_workers=config.data.num_workers)
    times = []
    batches = iter(loader)
    for _ in range(steps):
        started = time.perf_counter()
        inputs, targets = next(batches)
        loss = model(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optimizer.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return times


def bench_parser(description: str, steps: int) -> argparse.ArgumentParser:
    """The options every trainer benchmark takes: the model, the batch and the steps of its one task."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", default="5M")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=steps)
    return parser


def parse_args(description: str, steps: int) -> argparse.Namespace:
    return bench_parser(description, steps).parse_args()


def one_task_config(args: argparse.Namespace, work: Path, *overrides: str):
    """Synthetic English data for one task of `args.steps` steps (plus a validation split), and its config."""
    tokens = args.steps * args.batch * args.seq_len
    assert cli_main(["preprocess", "--source", "synthetic:en", "--out", str(work / "data" / "en"),
                     "--tokens", str(2 * tokens), "--seq-len", str(args.seq_len), "--val-tokens", str(16 * args.seq_len)]) == 0
    return load_config(None, [
        f"run_dir={work / 'run'}", f"model.preset={args.preset}", f"data.root={work / 'data'}",
        f"data.seq_len={args.seq_len}", f"data.micro_batch_size={args.batch}", f"data.global_batch_size={args.batch}",
        "data.num_workers=1", "curriculum.tasks=[{name: en}]", f"curriculum.task_tokens={tokens}",
        "log_every=1", "probe.enabled=false", "launch.zero_stage=1", "launch.precision=fp32", *overrides,
    ])


def main() -> None:
    args = parse_args(__doc__, steps=30)
    work = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    config = one_task_config(args, work)

    baseline = bare_loop_step_times(config, work / "data" / "en", args.steps)
    trainer = Trainer(config)
    trainer.run()
    records = [r for r in map(json.loads, (work / "run" / "metrics.jsonl").read_text().splitlines()) if r["event"] == "step"]
    tokens_per_step = args.batch * args.seq_len
    trainer_times = [tokens_per_step / r["tokens_per_s"] for r in records]
    # skip warm-up steps on both sides
    bare_s, trainer_s = statistics.median(baseline[3:]), statistics.median(trainer_times[3:])
    print(f"preset: {args.preset} (seq {args.seq_len}, batch {args.batch}, fp32, cpu, {args.steps} steps)")
    print(f"bare_loop_s_per_step: {bare_s:.4f}")
    print(f"trainer_s_per_step: {trainer_s:.4f}")
    print(f"steps_per_s_ratio_trainer_vs_bare: {bare_s / trainer_s:.3f} (target >= 0.90)")

    state = {"step": len(records)}
    started = time.perf_counter()
    saved = trainer.checkpointer.save("bench-checkpoint", state, keep=False)
    trainer.checkpointer.load(saved)
    checkpointer_s = time.perf_counter() - started
    model = trainer.step_runner.engine.module
    optimizer = trainer.step_runner.optimizer.optimizer
    started = time.perf_counter()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, work / "plain.pt")
    torch.load(work / "plain.pt", weights_only=False)
    plain_s = time.perf_counter() - started
    trainer.close()
    print(f"checkpointer_save_load_s: {checkpointer_s:.3f}")
    print(f"torch_save_load_s: {plain_s:.3f}")
    print(f"checkpoint_ratio_vs_torch_save: {checkpointer_s / plain_s:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
