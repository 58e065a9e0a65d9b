"""Preprocessing tokens/s against the bare tokenizer on the same text in this process (target >= 0.8),
and 2 workers against 1 (target >= 1.7x on 2 cores)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from plasticity_dist.data.preprocess import PreprocessArgs, plan_jobs, preprocess
from plasticity_dist.data.sources import iter_documents
from plasticity_dist.tokenizer import load_tokenizer

ARGS = PreprocessArgs("synthetic:en", 24_000_000, seq_len=2048, shard_tokens=6_000_000)


def bare_tokenizer_tokens_per_second(args: PreprocessArgs) -> float:
    """Read and tokenize each shard's partition up to the shard's token count, nothing else."""
    tokenizer, tokens = load_tokenizer(args.tokenizer), 0
    started = time.perf_counter()
    for job in plan_jobs(args):
        documents = iter_documents(args.source, partition=job.partition, num_partitions=job.partitions, seed=args.seed)
        wanted, done = job.rows * (args.seq_len + 1), 0
        while done < wanted:
            done += sum(len(ids) + 1 for ids in tokenizer.encode_batch([next(documents) for _ in range(256)]))
        tokens += wanted
    return tokens / (time.perf_counter() - started)


def preprocess_tokens_per_second(args: PreprocessArgs, workers: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        preprocess(args, Path(folder), workers=workers)
        return sum(job.rows for job in plan_jobs(args)) * (args.seq_len + 1) / (time.perf_counter() - started)


def main() -> int:
    bare = bare_tokenizer_tokens_per_second(ARGS)
    one = preprocess_tokens_per_second(ARGS, 1)
    two = preprocess_tokens_per_second(ARGS, 2)
    print(f"bare_tokenizer_tokens_per_s: {bare:,.0f}")
    print(f"preprocess_1_worker_tokens_per_s: {one:,.0f}")
    print(f"preprocess_2_workers_tokens_per_s: {two:,.0f}")
    print(f"preprocess_vs_bare_tokenizer_ratio: {one / bare:.3f} (target >= 0.8)")
    print(f"two_workers_vs_one_speedup: {two / one:.2f}x (target >= 1.7x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
