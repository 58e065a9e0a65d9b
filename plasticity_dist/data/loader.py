"""The training data stream: an exact, resumable, world-size independent order of packed rows.

Order. Per (seed, task, dataset, epoch) the blocks are permuted, consecutive groups of
`shuffle_window_blocks` blocks form windows, and the rows of each window are permuted. Epochs follow each
other without end, so a task (a token budget) never runs dry. With several datasets, each global row is
drawn from one of them by weight (a seeded choice per row), and each dataset advances through its own
epochs. Global batch j is rows [j*B, (j+1)*B) of that stream.

Split. Within a step, micro-batch a of rank r is rows [a*W*m + r*m, ...+m) of the global batch (W ranks,
m rows each, B / (W*m) accumulation micro-batches), so the ranks' micro-batches of a step are exactly
the global batch whatever W is. DataLoader workers build chunks of consecutive micro-batches, chunk c on
worker c % num_workers; DataLoader hands items out round-robin, so the stream is the same for any
number of workers.

Transfer. A worker gathers a chunk's stored ids (uint16/uint32) straight into one of its slots of shared
memory, allocated once per iteration, and sends only (worker, slot, micro-batches); the main process
widens each micro-batch into int64 inputs and targets and then frees the slot. Fresh shared memory per
chunk (what DataLoader does with a returned tensor) costs as much as decoding it.

Reading. Blocks are fetched by the manifest's offsets (pread + zstd decode), not by streaming the tars:
a global block order and a seek on resume need random access, which webdataset's streaming does not
offer (webdataset #271). Each rank decodes the windows it touches; memory holds two windows per dataset.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from plasticity_dist.data.permutation import permute_ids
from plasticity_dist.data.shards import BlockReader, Manifest, ShardError, iter_shard_blocks, read_manifest
from plasticity_dist.study.batch_plan import BatchPlan
from plasticity_dist.study.config import DataSection
from plasticity_dist.study.curriculum import Task

Batch = tuple[torch.Tensor, torch.Tensor]
STATE_VERSION = 1
_BLOCK_ORDER, _ROW_ORDER, _MIX = 1, 2, 3  # first entropy word of each generator, so streams never collide
_MIX_CHUNK_ROWS = 1 << 16
_CHUNK_WINDOWS = 8  # windows per chunk: a window at a chunk boundary is decoded by two workers
_PREFETCH = 2  # chunks queued per DataLoader worker; each worker has _PREFETCH + 1 slots


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers start from a forkserver that imported this module, never by forking the trainer itself.

    The trainer has threads (gloo, progress, probe scheduling), and CPython 3.11.7 (ours) can deadlock a child
    forked while another thread is created or destroyed (python/cpython#112275): seen here as a demo run whose
    new loader worker hung in PyOS_AfterFork_Child. The server is single-threaded, so forks from it are safe,
    and its preloaded torch keeps a worker's start cheap.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__])
    return context


def _widen(ids: np.ndarray, permutation: int | None, vocab_size: int) -> torch.Tensor:
    """Stored ids as a new contiguous int64 tensor, under the task's token permutation if it has one (numpy's
    cast and lookup run ~1.5x faster than torch's here)."""
    return torch.from_numpy(permute_ids(ids, permutation, vocab_size))


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(entropy)))


class _DatasetOrder:
    """One dataset's endless row stream: epoch after epoch, each in its own shuffled order."""

    def __init__(self, reader: BlockReader, seed: int, task: int, index: int, window_blocks: int) -> None:
        self.reader, self.seed, self.task, self.index, self.window_blocks = reader, seed, task, index, window_blocks
        manifest = reader.manifest
        self.blocks = [(s, b) for s, shard in enumerate(manifest.shards) for b in range(len(shard.blocks))]
        self.block_rows = np.array([block.rows for shard in manifest.shards for block in shard.blocks])
        self.rows_per_epoch = manifest.rows
        self.layout_epoch = -1
        self.window_starts = np.zeros(1, dtype=np.int64)
        self.block_order = np.zeros(0, dtype=np.int64)
        self.windows: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.row_type = np.dtype((np.void, manifest.row_len * reader.dtype.itemsize))

    def _layout(self, epoch: int) -> None:
        if epoch == self.layout_epoch:
            return
        self.block_order = _rng(_BLOCK_ORDER, self.seed, self.task, self.index, epoch).permutation(len(self.blocks))
        rows = self.block_rows[self.block_order]
        window_rows = np.add.reduceat(rows, np.arange(0, len(rows), self.window_blocks))
        self.window_starts = np.concatenate([[0], np.cumsum(window_rows)])
        self.layout_epoch = epoch

    def _window(self, epoch: int, window: int) -> tuple[np.ndarray, np.ndarray]:
        """A window's rows in file order, one opaque element per row (gathers become row memcpys), and
        the window's row permutation."""
        key = (epoch, window)
        if key not in self.windows:
            members = self.block_order[window * self.window_blocks:(window + 1) * self.window_blocks]
            blocks = [self.reader.read(*self.blocks[member]) for member in members]
            rows = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
            permutation = _rng(_ROW_ORDER, self.seed, self.task, self.index, epoch, window).permutation(len(rows))
            self.windows[key] = (rows.view(self.row_type).ravel(), permutation)
            if len(self.windows) > 2:
                self.windows.popitem(last=False)
        return self.windows[key]

    def rows(self, positions: np.ndarray, out: np.ndarray) -> None:
        """Write the rows at sorted `positions` of this dataset's endless stream into `out` (C-contiguous,
        one row each); sorted, so runs of positions share a window."""
        destination = out.view(self.row_type).ravel()
        filled = 0
        epochs, offsets = np.divmod(positions, self.rows_per_epoch)
        for epoch in np.unique(epochs):
            self._layout(int(epoch))
            in_epoch = offsets[epochs == epoch]
            windows = np.searchsorted(self.window_starts, in_epoch, side="right") - 1
            for window in np.unique(windows):
                rows, permutation = self._window(int(epoch), int(window))
                picks = permutation[in_epoch[windows == window] - self.window_starts[window]]
                np.take(rows, picks, out=destination[filled:filled + len(picks)], mode="clip")  # clip: unbuffered
                filled += len(picks)


class _Mix:
    """Which dataset each global row comes from, and its position in that dataset's stream."""

    def __init__(self, weights: Sequence[float], seed: int, task: int) -> None:
        self.probabilities = np.asarray(weights, dtype=np.float64) / sum(weights)
        self.seed, self.task = seed, task
        self.chunk = -1
        self.counts_at_chunk = np.zeros(len(weights), dtype=np.int64)

    def _advance_to(self, chunk: int) -> None:
        """Move to `chunk`, keeping only running counts (constant memory however far the stream goes)."""
        if chunk < self.chunk:
            self.chunk, self.counts_at_chunk = -1, np.zeros_like(self.counts_at_chunk)
        while self.chunk < chunk:
            if self.chunk >= 0:
                self.counts_at_chunk = self.counts_at_chunk + np.bincount(self.choices, minlength=len(self.probabilities))
            self.chunk += 1
            rng = _rng(_MIX, self.seed, self.task, self.chunk)
            self.choices = rng.choice(len(self.probabilities), size=_MIX_CHUNK_ROWS, p=self.probabilities)
            self.positions = np.empty(_MIX_CHUNK_ROWS, dtype=np.int64)
            for dataset in range(len(self.probabilities)):
                chosen = self.choices == dataset
                self.positions[chosen] = self.counts_at_chunk[dataset] + np.arange(chosen.sum())

    def counts_before(self, row: int) -> np.ndarray:
        """How many of the global rows before `row` each dataset supplied."""
        if len(self.probabilities) == 1:
            return np.array([row])
        chunk, offset = divmod(row, _MIX_CHUNK_ROWS)
        self._advance_to(chunk)
        return self.counts_at_chunk + np.bincount(self.choices[:offset], minlength=len(self.probabilities))

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dataset index, position in that dataset's stream) of each global row in sorted `rows`."""
        if len(self.probabilities) == 1:
            return np.zeros(len(rows), dtype=np.int64), rows
        datasets, positions = np.empty_like(rows), np.empty_like(rows)
        chunks, offsets = np.divmod(rows, _MIX_CHUNK_ROWS)
        for chunk in np.unique(chunks):
            in_chunk = chunks == chunk
            self._advance_to(int(chunk))
            datasets[in_chunk] = self.choices[offsets[in_chunk]]
            positions[in_chunk] = self.positions[offsets[in_chunk]]
        return datasets, positions


class _ChunkStream(IterableDataset):
    """One rank's micro-batches from `first` to `total`, built in chunks of `chunk_size` micro-batches
    into the producing worker's shared slots (see "Transfer" in the module docstring)."""

    def __init__(self, orders: list[_DatasetOrder], mix: _Mix, plan: BatchPlan, rank: int,
                 first: int, total: int, chunk_size: int, num_workers: int) -> None:
        self.orders, self.mix, self.plan, self.rank = orders, mix, plan, rank
        self.micro_batch = plan.micro_batch_size
        self.first, self.total, self.chunk_size = first, total, chunk_size
        self.dtype, self.row_len = orders[0].reader.dtype, orders[0].reader.manifest.row_len
        producers, self.slots_per_worker = max(1, num_workers), _PREFETCH + 1
        slot_bytes = chunk_size * self.micro_batch * self.row_len * self.dtype.itemsize
        self.slot_memory = torch.empty(producers * self.slots_per_worker * slot_bytes, dtype=torch.uint8)
        if num_workers:
            self.slot_memory.share_memory_()
        # a worker refills a slot only after the main process has handed out its micro-batches
        self.free_slots = [_worker_context().Semaphore(self.slots_per_worker) for _ in range(producers)]

    def slot(self, worker: int, slot: int, micro_batches: int) -> np.ndarray:
        """A slot's first `micro_batches` micro-batches, shape (micro-batches, rows, seq_len + 1)."""
        slots = self.slot_memory.numpy().view(self.dtype).reshape(len(self.free_slots), self.slots_per_worker, -1)
        size = micro_batches * self.micro_batch * self.row_len
        return slots[worker, slot, :size].reshape(micro_batches, self.micro_batch, self.row_len)

    def global_rows(self, micro_batches: range) -> np.ndarray:
        plan = self.plan
        steps, within = np.divmod(np.asarray(micro_batches, dtype=np.int64), plan.accum_steps)
        starts = steps * plan.global_batch_size + (within * plan.world_size + self.rank) * self.micro_batch
        return (starts[:, None] + np.arange(self.micro_batch)).ravel()

    def build(self, micro_batches: range, out: np.ndarray) -> None:
        """Write the stored ids of these micro-batches into `out`, (micro-batches, rows, seq_len + 1)."""
        datasets, positions = self.mix.locate(self.global_rows(micro_batches))
        rows = out.reshape(len(positions), self.row_len)
        if len(self.orders) == 1:
            self.orders[0].rows(positions, rows)
            return
        for index, order in enumerate(self.orders):
            chosen = datasets == index
            if chosen.any():
                gathered = np.empty((int(chosen.sum()), self.row_len), dtype=self.dtype)
                order.rows(positions[chosen], gathered)
                rows[chosen] = gathered

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """(worker, slot, micro-batches) of each chunk this worker built."""
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        starts = range(self.first, self.total, self.chunk_size)
        for index, start in enumerate(starts[worker_id::num_workers]):
            micro_batches = range(start, min(start + self.chunk_size, self.total))
            slot = index % self.slots_per_worker
            self.free_slots[worker_id].acquire()
            self.build(micro_batches, self.slot(worker_id, slot, len(micro_batches)))
            yield worker_id, slot, len(micro_batches)


class ShardLoader:
    """Micro-batches (inputs, targets) of one task for one rank; see the module docstring for the order."""

    def __init__(
        self, datasets: Sequence[str | Path], *, seq_len: int, micro_batch_size: int, global_batch_size: int,
        token_budget: int, rank: int, world_size: int, seed: int, task: int, num_workers: int = 1,
        weights: Sequence[float] | None = None, shuffle_window_blocks: int = 1, tokenizer: str | None = None,
        permutation: int | None = None,
    ) -> None:
        if not datasets:
            raise ValueError("ShardLoader needs at least one dataset")
        weights = list(weights) if weights is not None else [1.0] * len(datasets)
        if len(weights) != len(datasets) or any(w < 0 for w in weights) or not sum(weights) > 0:
            raise ValueError(f"weights {weights} must be {len(datasets)} non-negative numbers, not all zero")
        self.plan = BatchPlan(seq_len, micro_batch_size, global_batch_size, world_size)
        if not 0 <= rank < world_size or min(seed, task, num_workers) < 0 or shuffle_window_blocks < 1:
            raise ValueError(f"bad loader arguments: rank={rank} world_size={world_size} seed={seed} task={task} "
                             f"num_workers={num_workers} shuffle_window_blocks={shuffle_window_blocks}")
        self.paths = [Path(path) for path in datasets]
        self.manifests = [read_manifest(path) for path in self.paths]
        self._check_manifests(seq_len, tokenizer)
        self.num_steps = self.plan.steps_for(token_budget)
        if self.num_steps < 1:
            raise ValueError(f"token_budget={token_budget} is less than one step "
                             f"(global_batch_size * seq_len = {self.plan.tokens_per_step} tokens)")
        self.seed, self.task, self.num_workers, self.rank = seed, task, num_workers, rank
        self.world_size, self.accum_steps = world_size, self.plan.accum_steps
        self.window_blocks = shuffle_window_blocks
        self.weights = weights
        self.permutation = permutation  # seed of the token-id permutation of every batch (data/permutation.py)
        self.readers = [BlockReader(path, manifest) for path, manifest in zip(self.paths, self.manifests)]
        self.handed_out = 0  # micro-batches this rank has yielded in this task

    def _check_manifests(self, seq_len: int, tokenizer: str | None) -> None:
        first = self.manifests[0]
        for path, manifest in zip(self.paths, self.manifests):
            where = path / "manifest.json"
            if manifest.seq_len != seq_len:
                raise ShardError(f"{where}: seq_len is {manifest.seq_len}, the loader was asked for {seq_len}")
            expected = tokenizer if tokenizer is not None else first.tokenizer
            if manifest.tokenizer != expected or manifest.vocab_size != first.vocab_size:
                raise ShardError(f"{where}: tokenizer is {manifest.tokenizer} (vocab {manifest.vocab_size}), "
                                 f"expected {expected} (vocab {first.vocab_size})")

    @property
    def manifest(self) -> Manifest:
        return self.manifests[0]

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size

    @property
    def tokenizer(self) -> str:
        return self.manifest.tokenizer

    def __len__(self) -> int:
        return self.num_steps * self.accum_steps

    def close(self) -> None:
        """Close the shard files this process has read from (DataLoader workers' close when they exit)."""
        for reader in self.readers:
            reader.close()

    def __enter__(self) -> ShardLoader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _stream(self) -> _ChunkStream:
        orders = [_DatasetOrder(reader, self.seed, self.task, index, self.window_blocks)
                  for index, reader in enumerate(self.readers)]
        mean_window_rows = self.window_blocks * self.manifest.rows / sum(len(s.blocks) for s in self.manifest.shards)
        steps_per_chunk = max(1, round(_CHUNK_WINDOWS * mean_window_rows / self.plan.global_batch_size))
        return _ChunkStream(
            orders, _Mix(self.weights, self.seed, self.task), self.plan, self.rank,
            first=self.handed_out, total=len(self), chunk_size=steps_per_chunk * self.accum_steps,
            num_workers=self.num_workers,
        )

    def __iter__(self) -> Iterator[Batch]:
        stream = self._stream()
        chunks: Any = iter(stream if self.num_workers == 0 else DataLoader(
            stream, batch_size=None, num_workers=self.num_workers, prefetch_factor=_PREFETCH,
            multiprocessing_context=_worker_context()))
        try:
            for worker, slot, micro_batches in chunks:
                try:  # widening here, from the slot, keeps the transfer at the stored width
                    for rows in stream.slot(worker, slot, micro_batches):
                        self.handed_out += 1  # counted before the yield: the state covers every batch handed out
                        yield (_widen(rows[:, :-1], self.permutation, self.vocab_size),
                               _widen(rows[:, 1:], self.permutation, self.vocab_size))
                finally:
                    stream.free_slots[worker].release()
        finally:
            shutdown = getattr(chunks, "_shutdown_workers", None)
            if shutdown is not None:  # end the workers now, not when the iterator is collected
                shutdown()

    def state_dict(self) -> dict[str, Any]:
        """Small and identical on every rank: which data, and how far the task's global stream has been read."""
        step, micro_batch = divmod(self.handed_out, self.accum_steps)
        return {
            "version": STATE_VERSION, "fingerprints": [m.fingerprint for m in self.manifests], "seed": self.seed,
            "task": self.task, "permutation": self.permutation, "step": step, "micro_batch": micro_batch,
            "world_size": self.world_size,
            "rows_consumed": step * self.plan.global_batch_size, "epochs": self._epochs(step * self.plan.global_batch_size),
        }

    def _epochs(self, rows_consumed: int) -> list[int]:
        """Each dataset's epoch at the next row of the stream."""
        counts = _Mix(self.weights, self.seed, self.task).counts_before(rows_consumed)
        return [int(count // manifest.rows) for count, manifest in zip(counts, self.manifests)]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Seek to the next batch after `state` (no replay); a new world size re-splits at a step boundary."""
        expected = [m.fingerprint for m in self.manifests]
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')!r}, this loader reads {STATE_VERSION}")
        if state["fingerprints"] != expected:
            raise ShardError(f"loader state was saved on data with fingerprints {state['fingerprints']}, but "
                             f"{', '.join(str(p / 'manifest.json') for p in self.paths)} have {expected}")
        if (state["seed"], state["task"]) != (self.seed, self.task):
            raise ValueError(f"loader state is for seed {state['seed']} task {state['task']}, "
                             f"this loader has seed {self.seed} task {self.task}")
        if state.get("permutation") != self.permutation:
            raise ValueError(f"loader state is for token permutation {state.get('permutation')}, this loader "
                             f"has {self.permutation}")
        if state["world_size"] != self.world_size and state["micro_batch"]:
            raise ValueError(f"loader state stops inside a step (micro-batch {state['micro_batch']}); it can be "
                             f"resumed with a new world size ({state['world_size']} -> {self.world_size}) only at a step boundary")
        self.handed_out = state["step"] * self.accum_steps + state["micro_batch"]


def task_loader(task: Task, data: DataSection, plan: BatchPlan, rank: int, tokenizer: str | None) -> ShardLoader:
    """The loader of one task of a run (and so of every probe, which is a run of one task) on rank `rank`."""
    return ShardLoader(
        task.datasets, seq_len=plan.seq_len, micro_batch_size=plan.micro_batch_size,
        global_batch_size=plan.global_batch_size, token_budget=task.tokens, rank=rank, world_size=plan.world_size,
        seed=data.seed, task=task.index, num_workers=data.num_workers, weights=task.weights,
        shuffle_window_blocks=data.shuffle_window_blocks, tokenizer=tokenizer, permutation=task.permutation,
    )


def iter_eval_batches(dataset: str | Path, *, seq_len: int, batch_size: int, max_tokens: int,
                      permutation: int | None = None) -> Iterator[Batch]:
    """The dataset's first rows in file order (at most `max_tokens` / seq_len, at least one), in batches, under
    token permutation `permutation` if given."""
    manifest = read_manifest(dataset)
    if manifest.seq_len != seq_len:
        raise ShardError(f"{Path(dataset) / 'manifest.json'}: seq_len is {manifest.seq_len}, evaluation asked for {seq_len}")
    remaining = min(manifest.rows, max(1, max_tokens // seq_len))
    kept = []
    blocks = itertools.chain.from_iterable(
        iter_shard_blocks(dataset, manifest, shard_index) for shard_index in range(len(manifest.shards)))
    for block in blocks:
        kept.append(block[:remaining])
        remaining -= len(kept[-1])
        if not remaining:
            break
    for batch in torch.from_numpy(permute_ids(np.concatenate(kept), permutation, manifest.vocab_size)).split(batch_size):
        yield batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
