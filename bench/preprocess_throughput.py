"""Preprocessing tokens/s against the bare tokenizer on the same text in this process (target >= 0.8),
and 2 workers against 1 (target >= 1.7x on 2 cores), with the byte tokenizer and with an 8k BPE trained
here by `tokenizers` (a real run's kind of tokenizer; single-threaded, as preprocessing runs it).

The bare tokenizer reads each shard's partition and encodes it with `encode_documents`, the call
preprocessing packs, up to the shard's token count: the ratio is what packing, compressing and writing
cost on top. The dataset is 16 equal shards (~170M tokens) so that two workers get equal work. Runs
alternate, ROUNDS times; each figure is the median. `two_processes_bare_tokenizer_speedup` is what two
independent processes tokenizing half the shards each get over one process tokenizing all, in the same
run: on a shared machine it, not 2.0, bounds the workers' speedup.

A worker compresses on a second thread that the OS runs on a free core: 1 worker on 2 cores gets one
(`cpu` compares CPU seconds: its wall time hides that cost), 2 workers share 2 cores between 4 threads.
With the byte tokenizer on synthetic text zstd costs about a quarter of tokenizing's CPU, so the two
targets conflict here: the 1-worker ratio gets past 0.8 by using the second core, which leaves 2 workers
that much less to gain. `two_workers_vs_one_core_speedup` holds the 1-worker run to one core: how the
workers scale per core.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from plasticity_dist.data.preprocess import DOCUMENTS_PER_BATCH, PreprocessArgs, plan_jobs, preprocess
from plasticity_dist.data.shards import token_dtype
from plasticity_dist.data.sources import iter_documents
from plasticity_dist.data.tokenizer import load_tokenizer

SEQ_LEN, ROWS_PER_BLOCK, SHARDS, ROUNDS = 2048, 255, 16, 2
BLOCKS_PER_SHARD = {"byte": 20, "bpe": 2}  # the BPE tokenizes ~60x slower: fewer tokens, same run time


def case_args(tokenizer: str) -> PreprocessArgs:
    shard_tokens = BLOCKS_PER_SHARD[tokenizer] * ROWS_PER_BLOCK * (SEQ_LEN + 1)
    spec = "byte" if tokenizer == "byte" else str(trained_bpe(Path(tempfile.mkdtemp(prefix="bench-bpe-"))))
    return PreprocessArgs("synthetic:en", SHARDS * shard_tokens, seq_len=SEQ_LEN, tokenizer=spec,
                          rows_per_block=ROWS_PER_BLOCK, shard_tokens=shard_tokens)


def trained_bpe(folder: Path) -> Path:
    """An 8192-token byte-level BPE trained on synthetic English and saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(itertools.islice(iter_documents("synthetic:en", seed=1), 5000), trainers.BpeTrainer(
        vocab_size=8192, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>").save_pretrained(folder)
    return folder


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def bare_tokenizer_tokens_per_second(args: PreprocessArgs, every_other: int | None = None) -> float:
    """Read and tokenize each shard's partition (or every other one, from `every_other`) up to the shard's
    token count, nothing else."""
    tokenizer, tokens = load_tokenizer(args.tokenizer), 0
    dtype = token_dtype(tokenizer.vocab_size)
    started = time.perf_counter()
    for job in plan_jobs(args)[slice(every_other, None, 2) if every_other is not None else slice(None)]:
        documents = job.documents(args)
        wanted, done = job.rows * (args.seq_len + 1), 0
        while done < wanted:
            done += len(tokenizer.encode_documents([next(documents) for _ in range(DOCUMENTS_PER_BATCH)], dtype))
        tokens += wanted
    return tokens / (time.perf_counter() - started)


def two_processes_bare_tokenizer_tokens_per_second(args: PreprocessArgs) -> float:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(len, [[], []])  # both processes started
        started = time.perf_counter()
        pool.starmap(bare_tokenizer_tokens_per_second, [(args, 0), (args, 1)], chunksize=1)
        return sum(job.rows for job in plan_jobs(args)) * (args.seq_len + 1) / (time.perf_counter() - started)


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """This thread, and the threads and processes it starts, on one of its cores meanwhile."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def preprocess_tokens_per_second(args: PreprocessArgs, workers: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        preprocess(args, Path(folder), workers=workers)
        return sum(job.rows for job in plan_jobs(args)) * (args.seq_len + 1) / (time.perf_counter() - started)


def measure(tokenizer: str) -> None:
    args = case_args(tokenizer)
    assert len(plan_jobs(args)) == SHARDS and len({job.rows for job in plan_jobs(args)}) == 1, "shards must be equal"
    bare, one, one_core_rates, two, ratios, cpu_ratios, speedups, core_speedups, machine = ([] for _ in range(9))
    for _ in range(ROUNDS):
        cpu_started = cpu_seconds()
        bare.append(bare_tokenizer_tokens_per_second(args))
        cpu_bare = cpu_seconds() - cpu_started
        one.append(preprocess_tokens_per_second(args, 1))
        cpu_one = cpu_seconds() - cpu_started - cpu_bare
        with one_core():
            one_core_rates.append(preprocess_tokens_per_second(args, 1))
        two.append(preprocess_tokens_per_second(args, 2))
        machine.append(two_processes_bare_tokenizer_tokens_per_second(args) / bare[-1])
        ratios.append(one[-1] / bare[-1])
        cpu_ratios.append(cpu_bare / cpu_one)
        speedups.append(two[-1] / one[-1])
        core_speedups.append(two[-1] / one_core_rates[-1])
    print(f"{tokenizer}_tokenizer: {args.tokens:,} tokens in {SHARDS} shards")
    print(f"{tokenizer}_bare_tokenizer_tokens_per_s: {statistics.median(bare):,.0f}")
    print(f"{tokenizer}_preprocess_1_worker_tokens_per_s: {statistics.median(one):,.0f}")
    print(f"{tokenizer}_preprocess_1_worker_1_core_tokens_per_s: {statistics.median(one_core_rates):,.0f}")
    print(f"{tokenizer}_preprocess_2_workers_tokens_per_s: {statistics.median(two):,.0f}")
    print(f"{tokenizer}_preprocess_vs_bare_tokenizer_ratio: {statistics.median(ratios):.3f} (target >= 0.8; "
          f"cpu {statistics.median(cpu_ratios):.3f})")
    print(f"{tokenizer}_two_processes_bare_tokenizer_speedup: {statistics.median(machine):.2f}x (this machine's bound)")
    print(f"{tokenizer}_two_workers_vs_one_speedup: {statistics.median(speedups):.2f}x (target >= 1.7x)")
    print(f"{tokenizer}_two_workers_vs_one_core_speedup: {statistics.median(core_speedups):.2f}x (1 worker held to one core)")


def main() -> int:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # as `preprocess` runs tokenizers, for the bare baseline too
    for tokenizer in sys.argv[1:] or BLOCKS_PER_SHARD:
        measure(tokenizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
