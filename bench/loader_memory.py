"""Peak RSS of the loader (main process plus its DataLoader worker) over a task 10x larger than another,
each in a fresh process on the same shards. Target: within 10% (memory flat in the task's length)."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from plasticity_dist.data.loader import ShardLoader
from plasticity_dist.data.preprocess import PreprocessArgs, preprocess

SEQ_LEN, DATA_TOKENS, SMALL_TASK = 1024, 8_000_000, 20_000_000  # the tasks run 2.5 and 25 epochs


def run_task(dataset: str, token_budget: int) -> int:
    """Iterate one task; print the peak RSS in KiB of this process plus its worker."""
    loader = ShardLoader([dataset], seq_len=SEQ_LEN, micro_batch_size=8, global_batch_size=32,
                         token_budget=token_budget, rank=0, world_size=1, seed=0, task=0, num_workers=1)
    for _ in loader:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(peak)
    return 0


def peak_rss_kib(dataset: Path, token_budget: int) -> int:
    command = [sys.executable, __file__, "--task", str(dataset), str(token_budget)]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1])


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        dataset = Path(folder) / "en"
        preprocess(PreprocessArgs("synthetic:en", DATA_TOKENS, seq_len=SEQ_LEN, shard_tokens=DATA_TOKENS // 4), dataset)
        small, large = peak_rss_kib(dataset, SMALL_TASK), peak_rss_kib(dataset, 10 * SMALL_TASK)
    print(f"peak_rss_task_{SMALL_TASK}_tokens_MiB: {small / 1024:.1f}")
    print(f"peak_rss_task_{10 * SMALL_TASK}_tokens_MiB: {large / 1024:.1f}")
    print(f"large_vs_small_task_rss_ratio: {large / small:.3f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(run_task(sys.argv[2], int(sys.argv[3])) if sys.argv[1:2] == ["--task"] else main())
