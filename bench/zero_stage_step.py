"""What ZeRO-1 costs a one-process step of the control's smallest model, against DeepSpeed's stage 0 (no ZeRO).

Issue 27 asks the trainer for >= 0.8 of a bare PyTorch loop's tokens/s at 12.4K on one process; ZeRO-1 did not
reach it, so `configs/control.yaml` runs stage 0. Each child process, pinned to one core, times the bare Adam loop and a
DeepSpeed engine built from the package's filled-in DeepSpeed config at one ZeRO stage, interleaved, on the
same batch (DeepSpeed allows one engine per process, hence a process per stage). The parent alternates the
stages over `--pairs` processes each and prints every process's ratio and each stage's median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

STEPS = 200


def child(stage: int) -> dict[str, float]:
    """Milliseconds per step of the bare loop and of a stage-`stage` engine, the faster of two rounds each."""
    import deepspeed
    import torch

    from plasticity_dist.control import CONTROL_CONFIG
    from plasticity_dist.engine.launch import deepspeed_config, init_world_env
    from plasticity_dist.study.config_files import load_config
    from plasticity_dist.train.build import build_model

    config = load_config(CONTROL_CONFIG, [f"launch.zero_stage={stage}"])
    init_world_env()
    deepspeed.init_distributed(dist_backend="gloo")
    ds_config = deepspeed_config(config, 1)
    torch.manual_seed(config.seed)
    models = [build_model(config.model, 257, config.data.seq_len) for _ in range(2)]
    optimizers = [torch.optim.AdamW(model.parameters(), lr=config.optimizer.lr, weight_decay=0.0) for model in models]
    engine, *_ = deepspeed.initialize(model=models[0], optimizer=optimizers[0], config=ds_config)
    inputs = torch.randint(0, 257, (config.data.micro_batch_size, config.data.seq_len))
    targets = torch.randint(0, 257, inputs.shape)

    def bare_steps(n: int) -> None:
        for _ in range(n):
            models[1](inputs, targets).backward()
            optimizers[1].step()
            optimizers[1].zero_grad(set_to_none=True)

    def engine_steps(n: int) -> None:
        for _ in range(n):
            engine.backward(engine(inputs, targets))
            engine.step()

    def ms_per_step(steps) -> float:
        started = time.perf_counter()
        steps(STEPS)
        return 1e3 * (time.perf_counter() - started) / STEPS

    bare_steps(20)
    engine_steps(20)
    rounds = [(ms_per_step(bare_steps), ms_per_step(engine_steps)) for _ in range(2)]
    return {"bare_ms": min(r[0] for r in rounds), "engine_ms": min(r[1] for r in rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=4, help="processes per stage, alternating")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ratios: dict[int, list[float]] = {1: [], 0: []}
    for _ in range(args.pairs):
        for stage in ratios:
            finished = subprocess.run(["taskset", "-c", "0", sys.executable, __file__, "--child", str(stage)],
                                      env=env, capture_output=True, text=True, check=True)
            seen = json.loads(finished.stdout.strip().splitlines()[-1])
            ratios[stage].append(seen["bare_ms"] / seen["engine_ms"])
            print(f"zero{stage}: bare {seen['bare_ms']:.2f} ms, engine {seen['engine_ms']:.2f} ms a step, "
                  f"ratio {ratios[stage][-1]:.3f}", flush=True)
    for stage, values in ratios.items():
        print(f"step_ratio_engine_vs_bare_zero{stage}_median: {statistics.median(values):.3f} "
              f"(range {min(values):.3f}-{max(values):.3f}, {len(values)} processes)")


if __name__ == "__main__":
    main()
