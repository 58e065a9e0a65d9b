"""Loader tokens/s (1 rank, W workers) against the raw limit on the same shards: read each tar and
zstd-decode every block into numpy in a tight loop, in this process. Target: loader >= 0.85 of raw."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

from plasticity_dist.data.loader import ShardLoader
from plasticity_dist.data.preprocess import PreprocessArgs, preprocess
from plasticity_dist.data.shards import decode_block, read_manifest

SEQ_LEN, TOKENS, WORKERS, EPOCHS = 2048, 48_000_000, 2, 4


def raw_tokens_per_second(dataset: Path) -> float:
    manifest, decompressor, tokens = read_manifest(dataset), zstandard.ZstdDecompressor(), 0
    dtype = np.dtype(manifest.dtype)
    started = time.perf_counter()
    for shard in manifest.shards * EPOCHS:
        data = (dataset / shard.name).read_bytes()
        for block in shard.blocks:
            payload = data[block.offset:block.offset + block.size]
            tokens += decode_block(payload, rows=block.rows, row_len=manifest.row_len, dtype=dtype, where=shard.name,
                                   decompressor=decompressor).size
    return tokens / (time.perf_counter() - started)


def loader_tokens_per_second(dataset: Path, num_workers: int) -> float:
    manifest = read_manifest(dataset)
    loader = ShardLoader([dataset], seq_len=SEQ_LEN, micro_batch_size=8, global_batch_size=64,
                         token_budget=EPOCHS * manifest.rows * SEQ_LEN, rank=0, world_size=1, seed=0, task=0,
                         num_workers=num_workers)
    started, tokens = time.perf_counter(), 0
    for inputs, _ in loader:
        tokens += inputs.numel() + len(inputs)  # rows of seq_len + 1 ids, as the raw loop counts them
    return tokens / (time.perf_counter() - started)


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        dataset = Path(folder) / "en"
        preprocess(PreprocessArgs("synthetic:en", TOKENS, seq_len=SEQ_LEN, shard_tokens=TOKENS // 4), dataset, workers=2)
        raw = raw_tokens_per_second(dataset)  # the shards were just written: both loops read the page cache
        loader = loader_tokens_per_second(dataset, WORKERS)
        print(f"raw_read_decode_tokens_per_s: {raw:,.0f}")
        for workers in (0, 1):
            print(f"loader_{workers}_workers_tokens_per_s: {loader_tokens_per_second(dataset, workers):,.0f}")
        print(f"loader_{WORKERS}_workers_tokens_per_s: {loader:,.0f}")
        print(f"loader_vs_raw_ratio: {loader / raw:.3f} (target >= 0.85)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
