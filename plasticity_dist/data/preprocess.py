"""Text to token shards (`plasticity-dist preprocess`): deterministic, parallel, resumable, splittable.

Every output shard is independent: it is packed to a fixed row count from its own range of the source's
partitions alone (`iter_documents(..., partition=range(...), num_partitions=<all ranges>)`), so the bytes of
a shard do not depend on which process, worker or array job builds it, nor on what else was built. A range is
one contiguous share of the source (a run of its bytes, rows or pieces: `shares.py`), which the shard's job
reads from its start until the shard is full, so the source is read once however many shards are built.
Ranges are sized to the shards' rows (the largest shard gets PARTITIONS_PER_LARGEST_SHARD partitions), so
each shard, a small validation split included, gets about its share of the source. The validation split
(`OUT/val`) takes the first ranges, the training shards the rest, so it holds documents the training data
does not. Each completion marker records what its job read (`reading`: documents read and used, records
taken from the source).

Shards are built in this process or in a pool of `--workers` forked processes. Each compresses on a second
thread, which the OS runs on a core left free: for one worker on two cores, or for the last shards of a run.

A finished shard is a renamed tar plus a completion marker (`.progress/shard-NNNNNN.json`); a rerun
skips shards with a marker. Whichever run (or `verify`) sees every marker writes the manifest. Making a shard
durable (fsync the tar, rename it, fsync its folder, then the same for its marker) waits on the disk, not the
CPU: in this process it runs on a thread of its own while the next shard is packed, in build order, so the
four fsyncs of every shard do not stall packing. A shard whose marker is missing is rebuilt, to the same bytes.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from plasticity_dist.common.fileio import atomic_write_json
from plasticity_dist.common.logging import get_logger
from plasticity_dist.common.processes import usable_cpus
from plasticity_dist.data.shards import (
    Manifest, ShardError, ShardWriter, read_manifest, shard_from_json, shard_name, token_dtype,
    verify_dataset, write_manifest,
)
from plasticity_dist.data.sources import Documents, iter_documents
from plasticity_dist.data.tokenizer import Tokenizer, load_tokenizer

log = get_logger()
PROGRESS_DIR = ".progress"
BLOCK_TOKENS = 1 << 19  # default block: ~1 MiB of uint16 ids; the unit of shuffling and of random reads
SHARD_TOKENS = 1 << 27  # default shard: 256 MiB of uint16 ids before compression
DOCUMENTS_PER_BATCH = 256  # at most, tokenized at once
FIRST_BATCH_DOCUMENTS = 4  # a shard's first batch, which begins measuring the documents' mean length
PARTITIONS_PER_LARGEST_SHARD = 64  # how finely shards' shares of the source follow their row counts
LAYOUT = 3  # version of the assignment of documents to shards (1: one equal partition per shard; 2: shares
# dealt document by document, i mod n, so every shard read the whole source; 3: contiguous shares)


@dataclass(frozen=True)
class PreprocessArgs:
    """The arguments that determine the dataset's bytes (recorded in the manifest)."""

    source: str
    tokens: int
    seq_len: int = 2048
    tokenizer: str = "byte"
    text_field: str = "text"
    rows_per_block: int = 0  # 0: BLOCK_TOKENS worth of rows
    shard_tokens: int = SHARD_TOKENS
    val_tokens: int = 0
    seed: int = 0
    layout: int = LAYOUT  # recorded so that a rerun refuses output that an older layout began

    def __post_init__(self) -> None:
        if self.layout != LAYOUT:
            raise ValueError(f"layout {self.layout}: this version builds layout {LAYOUT} only")
        row_len = self.seq_len + 1
        for option, value, minimum in [("--tokens", self.tokens, row_len), ("--seq-len", self.seq_len, 1),
                                       ("--rows-per-block", self.rows_per_block, 0),
                                       ("--shard-tokens", self.shard_tokens, row_len),
                                       ("--val-tokens", self.val_tokens, 0), ("--seed", self.seed, 0)]:
            if value < minimum:
                raise ValueError(f"{option} {value} must be at least {minimum}")
        if 0 < self.val_tokens < row_len:
            raise ValueError(f"--val-tokens {self.val_tokens} is less than one sequence ({row_len} tokens)")
        if not self.rows_per_block:
            object.__setattr__(self, "rows_per_block", max(1, BLOCK_TOKENS // row_len))


@dataclass(frozen=True)
class ShardJob:
    split: str  # "train" or "val"
    index: int  # shard number within its split
    partition: range  # of the source's partitions, out of `partitions`
    partitions: int
    rows: int
    whole_group_partitions: int  # parquet row groups at most this wide go whole to one share (a quarter of the
    # narrowest share: every share gets several), wider ones row by row

    def documents(self, args: PreprocessArgs) -> Documents:
        """The documents of this shard's share of the source, in order."""
        return iter_documents(args.source, text_field=args.text_field, partition=self.partition,
                              num_partitions=self.partitions, seed=args.seed,
                              whole_group_partitions=self.whole_group_partitions)

    def dataset_dir(self, out: Path) -> Path:
        return out / "val" if self.split == "val" else out

    def marker(self, dataset_dir: Path) -> Path:
        return dataset_dir / PROGRESS_DIR / shard_name(self.index).replace(".tar", ".json")


def plan_jobs(args: PreprocessArgs) -> list[ShardJob]:
    """Every shard of the training and validation splits, in a fixed order, each with a range of the source's
    partitions as wide as its rows need (rounded up to whole partitions)."""
    row_len = args.seq_len + 1
    rows_per_shard = max(1, args.shard_tokens // row_len // args.rows_per_block) * args.rows_per_block
    shards = [(split, index, min(rows_per_shard, rows - index * rows_per_shard))
              for split, rows in {"val": args.val_tokens // row_len, "train": args.tokens // row_len}.items()
              for index in range(math.ceil(rows / rows_per_shard))]
    rows_per_partition = math.ceil(max(rows for *_, rows in shards) / PARTITIONS_PER_LARGEST_SHARD)
    widths = [math.ceil(rows / rows_per_partition) for *_, rows in shards]
    starts = itertools.accumulate(widths, initial=0)
    whole_group_partitions = max(1, min(widths) // 4)
    return [ShardJob(split, index, range(start, start + width), sum(widths), rows, whole_group_partitions)
            for (split, index, rows), start, width in zip(shards, starts, widths)]


class _WriteBehind:
    """Compresses and writes blocks, in order, on one background thread (zstd releases the GIL), so packing
    the next block overlaps compressing this one; at most two blocks wait."""

    def __init__(self, writer: ShardWriter, executor: ThreadPoolExecutor, report: Callable[[int], None]) -> None:
        self.writer, self.executor, self.report = writer, executor, report
        self.queued: collections.deque[tuple[Future, int]] = collections.deque()

    def add_block(self, rows: np.ndarray) -> None:
        self.queued.append((self.executor.submit(self.writer.add_block, rows), rows.size))
        while len(self.queued) > 2:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, tokens = self.queued.popleft()
        future.result()  # re-raises a write error here
        self.report(tokens)

    def drain(self) -> None:
        while self.queued:
            self._wait_oldest()


def build_shard(args: PreprocessArgs, out: Path, job: ShardJob, report: Callable[[int], None]) -> Callable[[], None]:
    """Tokenize, pack and write one shard's blocks (`report` gets tokens as they land); returns what is left,
    which may run on another thread: fsync and rename the tar, then write its completion marker."""
    tokenizer = load_tokenizer(args.tokenizer)
    dataset_dir = job.dataset_dir(out)
    writer = ShardWriter(dataset_dir / shard_name(job.index))
    with ThreadPoolExecutor(max_workers=1) as executor:
        accounts = _pack(args, job, tokenizer, _WriteBehind(writer, executor, report))

    def make_durable() -> None:
        atomic_write_json(job.marker(dataset_dir), {
            "args": asdict(args), "split": job.split, "tokenizer": tokenizer.name,
            "vocab_size": tokenizer.vocab_size, "eot_id": tokenizer.eot_id, "shard": writer.finish().to_json(),
            "reading": accounts,
        })

    return make_durable


def _batch_size(ids_needed: int, ids_read: int, documents_read: int) -> int:
    """Documents to tokenize next: 90 % of what the shard still needs at the mean length so far, and no more
    than were read so far (the mean is measured on enough documents first), so that the last batches shrink
    to single documents and a shard stops reading its share where it is full."""
    if documents_read == 0:
        return FIRST_BATCH_DOCUMENTS
    wanted = int(ids_needed * documents_read / max(ids_read, 1) * 0.9)
    return max(1, min(DOCUMENTS_PER_BATCH, documents_read, wanted))


def _pack(args: PreprocessArgs, job: ShardJob, tokenizer: Tokenizer, writer: _WriteBehind) -> dict[str, int]:
    """The job's documents, tokenized and packed into blocks of rows written through `writer`; returns its
    reading accounts (documents read and used, records its reader took from the source)."""
    dtype, row_len = token_dtype(tokenizer.vocab_size), args.seq_len + 1
    documents = job.documents(args)
    pending: list[np.ndarray] = []  # ids not yet in a block, joined only when a block is due
    pending_ids, rows_written, documents_read, ids_read, unused = 0, 0, 0, 0, 0
    while rows_written < job.rows:
        needed = (job.rows - rows_written) * row_len - pending_ids
        batch = list(itertools.islice(documents, _batch_size(needed, ids_read, documents_read)))
        if not batch:
            _ran_out(args, job, documents_read, rows_written + pending_ids // row_len, ids_read)
        documents_read += len(batch)
        pending.append(tokenizer.encode_documents(batch, dtype))
        pending_ids += len(pending[-1])
        ids_read += len(pending[-1])
        while rows_written < job.rows:
            rows = min(args.rows_per_block, job.rows - rows_written)
            if pending_ids < rows * row_len:
                break
            ids, cut = np.concatenate(pending), rows * row_len
            writer.add_block(ids[:cut].reshape(rows, row_len))
            pending, pending_ids = [ids[cut:]], pending_ids - cut
            rows_written += rows
            # documents that start after the cut (the ids end with an end-of-text): read, never used
            unused = int(np.count_nonzero(ids[cut - 1:-1] == tokenizer.eot_id))
    accounts = {"documents_read": documents_read, "documents_used": documents_read - unused,
                "source_records_read": documents.records_read}
    writer.drain()
    return accounts


def _ran_out(args: PreprocessArgs, job: ShardJob, documents_read: int, packed: int, ids_read: int) -> NoReturn:
    """Raise the error of a share too small for its shard, with the source's size estimated from the share."""
    needed = sum(job.rows for job in plan_jobs(args)) * (args.seq_len + 1)
    width = len(job.partition)
    raise ValueError(
        f"source {args.source}: {job.split} shard {job.index} (partitions {job.partition.start}-"
        f"{job.partition.stop - 1} of {job.partitions}) ran out after {documents_read} documents ({packed} of "
        f"{job.rows} sequences): its share ({width}/{job.partitions} of the source) held {ids_read:,} tokens, so the "
        f"source holds about {ids_read * job.partitions // width:,}, and --tokens plus --val-tokens need "
        f"{needed:,}; each shard reads only its share of the source (whole parquet row groups or stream pieces, "
        f"which may be uneven), so ask for fewer tokens")


def _is_done(dataset_dir: Path, job: ShardJob) -> bool:
    marker = job.marker(dataset_dir)
    if not marker.is_file():
        return False
    tar = dataset_dir / shard_name(job.index)
    return tar.is_file() and tar.stat().st_size == json.loads(marker.read_text())["shard"]["bytes"]


def _record_args(args: PreprocessArgs, out: Path) -> None:
    """Write (or check) the arguments every job of this output folder must share."""
    for split, dataset_dir in {(job.split, job.dataset_dir(out)) for job in plan_jobs(args)}:
        path = dataset_dir / PROGRESS_DIR / "args.json"
        if path.is_file():
            recorded = json.loads(path.read_text())["args"]
            if recorded != asdict(args):
                changed = {key: (recorded.get(key), value) for key, value in asdict(args).items() if recorded.get(key) != value}
                raise ValueError(f"{path}: {dataset_dir} is being built with other arguments {changed} (recorded, now); "
                                 f"use another --out or delete it")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {"split": split, "args": asdict(args)})


def finish_dataset(dataset_dir: str | Path) -> Manifest | None:
    """Write the manifest from the completion markers once every shard has one; None while some are missing."""
    dataset_dir = Path(dataset_dir)
    args_path = dataset_dir / PROGRESS_DIR / "args.json"
    if (dataset_dir / "manifest.json").is_file() or not args_path.is_file():
        return read_manifest(dataset_dir)
    recorded = json.loads(args_path.read_text())
    args = PreprocessArgs(**recorded["args"])
    jobs = [job for job in plan_jobs(args) if job.split == recorded["split"]]
    if not all(_is_done(dataset_dir, job) for job in jobs):
        return None
    markers = [json.loads(job.marker(dataset_dir).read_text()) for job in jobs]
    first = markers[0]
    manifest = Manifest(
        tokenizer=first["tokenizer"], vocab_size=first["vocab_size"], eot_id=first["eot_id"], seq_len=args.seq_len,
        source=args.source, split=recorded["split"], args=asdict(args),
        shards=tuple(shard_from_json(marker["shard"], str(job.marker(dataset_dir)), args.seq_len + 1)
                     for marker, job in zip(markers, jobs)),
    )
    write_manifest(dataset_dir, manifest)
    return manifest


_progress_queue: Any = None  # set in each pool worker by `_init_worker`


def _init_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue


def _build_in_worker(args: PreprocessArgs, out: Path, job: ShardJob) -> None:
    build_shard(args, out, job, _progress_queue.put)()  # durable before the pool counts the job done


class _TokensPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} tokens/s")


def _run_jobs(args: PreprocessArgs, out: Path, jobs: list[ShardJob], workers: int, progress: Progress) -> None:
    """Build `jobs` in this process or in a pool of `workers`, showing `progress` meanwhile. The pool forks
    (no interpreter start and imports per worker, as spawn has) before `progress` starts its refresh thread:
    a fork copies the locks a thread holds but not the thread. This process tokenizes nothing then, and
    `tokenizers` turns its thread pool off in a child forked after that pool ran."""
    bar = progress.add_task(f"preprocess {args.source}", total=sum(job.rows for job in jobs) * (args.seq_len + 1))
    if workers == 1 or len(jobs) <= 1:
        with progress, ThreadPoolExecutor(max_workers=1) as durability:
            finishing: Future | None = None
            for job in jobs:
                make_durable = build_shard(args, out, job, lambda tokens: progress.advance(bar, tokens))
                if finishing is not None:
                    finishing.result()  # re-raises a write error of the shard before
                finishing = durability.submit(make_durable)
            if finishing is not None:
                finishing.result()
        return
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with context.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(queue,)) as pool, progress:
        results = [pool.apply_async(_build_in_worker, (args, out, job)) for job in jobs]
        while True:
            while not queue.empty():
                progress.advance(bar, queue.get())
            for result in results:
                if result.ready() and not result.successful():
                    result.get()  # re-raises the worker's error; leaving the block terminates the pool
            if all(result.ready() for result in results):
                return
            time.sleep(0.1)


def preprocess(args: PreprocessArgs, out: str | Path, *, workers: int = 1, shard_index: int = 0,
               num_shards: int = 1) -> str:
    """Build this job's share of the shards (k % num_shards == shard_index) and return a summary line."""
    if workers < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"--workers {workers} must be >= 1 and --shard-index {shard_index} in [0, --num-shards {num_shards})")
    out = Path(out)
    # The workers are the parallelism: without this, Hugging Face tokenizers run a thread per core in every
    # worker (W x cores threads), and one worker alone already takes every core.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    load_tokenizer(args.tokenizer)  # a bad tokenizer spec fails here, before any work
    cpus = usable_cpus()
    if workers > cpus:
        log.warning(f"--workers {workers} share the {cpus} CPU(s) this process may run on (its affinity); "
                    f"under Slurm, give the job --cpus-per-task={workers}")
    _record_args(args, out)
    jobs = plan_jobs(args)
    todo = [job for position, job in enumerate(jobs)
            if position % num_shards == shard_index and not _is_done(job.dataset_dir(out), job)]
    started = time.perf_counter()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                        _TokensPerSecond(), TimeRemainingColumn())
    _run_jobs(args, out, todo, workers, progress)
    seconds = time.perf_counter() - started
    built = sum(job.rows for job in todo) * (args.seq_len + 1)
    dataset_dirs = sorted({job.dataset_dir(out) for job in jobs})
    manifests = [finish_dataset(path) for path in dataset_dirs]
    rate = (f"built {len(todo)} shards, {built:,} tokens in {seconds:.1f} s ({built / max(seconds, 1e-9):,.0f} "
            f"tokens/s) with {workers} worker(s) on {cpus} CPU(s)")
    if any(manifest is None for manifest in manifests):
        return f"{out}: {rate}; other jobs' shards are still missing, so no manifest yet"
    return f"{rate}; " + "; ".join(summarize(manifest, path) for manifest, path in zip(manifests, dataset_dirs))


def summarize(manifest: Manifest, dataset_dir: str | Path) -> str:
    totals = manifest.to_json()["totals"]
    return (f"{dataset_dir}: {totals['shards']} shards, {totals['blocks']} blocks, {totals['rows']:,} sequences, "
            f"{totals['tokens']:,} tokens, {totals['bytes']:,} bytes, fingerprint {manifest.fingerprint[:16]}")


def verify(dataset_dir: str | Path) -> list[str]:
    """Check the dataset (and its `val` split, if any) block by block; one summary line per dataset."""
    lines = []
    for path in [Path(dataset_dir), Path(dataset_dir) / "val"]:
        if path != Path(dataset_dir) and not path.is_dir():
            continue
        if finish_dataset(path) is None:
            raise ShardError(f"{path}: incomplete, some shards have no completion marker in {path / PROGRESS_DIR} "
                             f"(rerun preprocess with the same arguments)")
        lines.append("OK " + summarize(verify_dataset(path), path))
    return lines
