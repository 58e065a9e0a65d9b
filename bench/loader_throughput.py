"""Loader tokens/s (1 rank, W workers) against the raw limit on the same shards: read each tar and
zstd-decode every block into numpy in a tight loop, in this process. Target: loader >= 0.85 of raw.

Raw and loader runs alternate, ROUNDS times, and each ratio is the median of the ratios of a loader run to
the raw run just before it, so load from other processes hits both sides alike. Both sides count every
stored id (rows * (seq_len + 1)). A task streams 16 epochs of the shards (~800M tokens), so worker
start-up weighs on the figure about as little as it does in a 5B-token task. `cpu_vs_raw` is raw CPU
seconds over loader CPU seconds (main process plus workers): the loader's efficiency whatever the load.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

from plasticity_dist.data.loader import ShardLoader
from plasticity_dist.data.preprocess import PreprocessArgs, preprocess
from plasticity_dist.data.shards import decode_block, read_manifest

SEQ_LEN, TOKENS, EPOCHS, ROUNDS, WORKERS = 2048, 48_000_000, 16, 3, (0, 1, 2)
HEADLINE_WORKERS = 2


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (DataLoader workers are joined at the end)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def timed(run) -> tuple[float, float, float]:
    """(tokens/s, tokens, CPU seconds) of `run()`, which returns the tokens it read."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    tokens = run()
    return tokens / (time.perf_counter() - started), tokens, cpu_seconds() - cpu_started


def raw_read_decode(dataset: Path) -> int:
    manifest, decompressor, tokens = read_manifest(dataset), zstandard.ZstdDecompressor(), 0
    dtype = np.dtype(manifest.dtype)
    for shard in manifest.shards * EPOCHS:
        data = (dataset / shard.name).read_bytes()
        for block in shard.blocks:
            payload = data[block.offset:block.offset + block.size]
            tokens += decode_block(payload, rows=block.rows, row_len=manifest.row_len, dtype=dtype, where=shard.name,
                                   decompressor=decompressor).size
    return tokens


def loader_read(dataset: Path, num_workers: int) -> int:
    manifest = read_manifest(dataset)
    loader = ShardLoader([dataset], seq_len=SEQ_LEN, micro_batch_size=8, global_batch_size=64,
                         token_budget=EPOCHS * manifest.rows * SEQ_LEN, rank=0, world_size=1, seed=0, task=0,
                         num_workers=num_workers)
    tokens = 0
    for inputs, _ in loader:
        tokens += inputs.numel() + len(inputs)  # rows of seq_len + 1 ids, as the raw loop counts them
    return tokens


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        dataset = Path(folder) / "en"
        args = PreprocessArgs("synthetic:en", TOKENS, seq_len=SEQ_LEN, shard_tokens=TOKENS // 4)
        preprocess(args, dataset, workers=2)
        raw_rates: list[float] = []
        rates, ratios, cpu_ratios = ({w: [] for w in WORKERS} for _ in range(3))
        for _ in range(ROUNDS):  # the shards were just written: both loops read the page cache
            for workers in WORKERS:
                raw, raw_tokens, raw_cpu = timed(lambda: raw_read_decode(dataset))
                rate, tokens, cpu = timed(lambda: loader_read(dataset, workers))
                raw_rates.append(raw)
                rates[workers].append(rate)
                ratios[workers].append(rate / raw)
                cpu_ratios[workers].append((raw_cpu / raw_tokens) / (cpu / tokens))
    print(f"raw_read_decode_tokens_per_s: {statistics.median(raw_rates):,.0f}")
    for workers in WORKERS:
        ratio, cpu_ratio = statistics.median(ratios[workers]), statistics.median(cpu_ratios[workers])
        print(f"loader_{workers}_workers_tokens_per_s: {statistics.median(rates[workers]):,.0f} "
              f"(vs raw {ratio:.3f}, cpu_vs_raw {cpu_ratio:.3f})")
    print(f"loader_vs_raw_ratio: {statistics.median(ratios[HEADLINE_WORKERS]):.3f} "
          f"({HEADLINE_WORKERS} workers, target >= 0.85)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
