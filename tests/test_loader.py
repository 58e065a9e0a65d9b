"""The loader: exact coverage, world-size and worker independence, resume, mixing, and failing fast."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from plasticity_dist.data.loader import ShardLoader, iter_eval_batches
from plasticity_dist.data.shards import ShardError, shard_name
from test_shards import SEQ_LEN, numbered_rows, write_dataset

ROWS = 120
GLOBAL_BATCH = 12
EPOCH_TOKENS = ROWS * SEQ_LEN  # a budget of exactly one pass: 10 steps of 12 rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loader") / "data"
    write_dataset(path, numbered_rows(ROWS), rows_per_block=9, rows_per_shard=45)
    return path


def make_loader(datasets: list[Path], **overrides) -> ShardLoader:
    arguments = dict(seq_len=SEQ_LEN, micro_batch_size=2, global_batch_size=GLOBAL_BATCH, token_budget=EPOCH_TOKENS,
                     rank=0, world_size=1, seed=3, task=0, num_workers=0)
    return ShardLoader(datasets, **{**arguments, **overrides})


def rows_per_step(datasets: list[Path], world_size: int, num_workers: int = 0, state: dict | None = None,
                  **overrides) -> list[list[int]]:
    """Each step's global batch as row ids in rank-then-micro-batch order, gathered over every rank."""
    per_rank = []
    for rank in range(world_size):
        loader = make_loader(datasets, rank=rank, world_size=world_size, num_workers=num_workers, **overrides)
        if state is not None:
            loader.load_state_dict(state)
        per_rank.append([inputs[:, 0].tolist() for inputs, _ in loader])
    assert len({len(batches) for batches in per_rank}) == 1, "every rank yields the same count"
    accum = loader.accum_steps
    steps = []
    for step in range(len(per_rank[0]) // accum):
        micro = [per_rank[rank][step * accum + a] for a in range(accum) for rank in range(world_size)]
        steps.append(list(itertools.chain.from_iterable(micro)))
    return steps


def test_batches_are_inputs_and_shifted_targets(dataset: Path) -> None:
    inputs, targets = next(iter(make_loader([dataset])))
    assert inputs.shape == targets.shape == (2, SEQ_LEN) and inputs.dtype == torch.long
    assert torch.equal(inputs[:, 1:], targets[:, :-1])


def open_shard_files() -> set[str]:
    """The shard files this process holds open."""
    names = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            names.add(os.readlink(fd))
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return {name for name in names if Path(name).name.startswith("shard-")}


def test_a_closed_loader_leaves_no_shard_file_open(tmp_path: Path) -> None:
    write_dataset(tmp_path, numbered_rows(ROWS), rows_per_block=9, rows_per_shard=45)
    with make_loader([tmp_path]) as loader:
        list(itertools.islice(loader, 30))  # half an epoch: blocks of several shards
        assert any(Path(name).parent == tmp_path for name in open_shard_files()), "the loader read no shard"
    assert not [name for name in open_shard_files() if Path(name).parent == tmp_path]


def test_workers_start_from_a_forkserver_and_end_when_the_stream_closes(dataset: Path) -> None:
    """A fork of the trainer, whose threads come and go, can deadlock the child (loader.py): workers never fork it."""
    batches = iter(make_loader([dataset], num_workers=2))
    next(batches)
    workers = multiprocessing.active_children()
    assert workers and all(psutil.Process(worker.pid).ppid() != os.getpid() for worker in workers)
    batches.close()
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("world_size, num_workers", list(itertools.product([1, 2, 3], [0, 1, 2])))
def test_one_epoch_covers_every_row_once_and_steps_do_not_depend_on_world_or_workers(
        dataset: Path, world_size: int, num_workers: int) -> None:
    steps = rows_per_step([dataset], world_size, num_workers)
    assert len(steps) == ROWS // GLOBAL_BATCH
    assert sorted(itertools.chain.from_iterable(steps)) == list(range(ROWS))
    assert steps == rows_per_step([dataset], 1, 0)


def test_a_budget_beyond_the_data_runs_new_epochs_in_new_orders(dataset: Path) -> None:
    steps = rows_per_step([dataset], 2, 1, token_budget=int(2.5 * EPOCH_TOKENS), shuffle_window_blocks=3)
    flat = list(itertools.chain.from_iterable(steps))
    assert len(flat) == 2.5 * ROWS
    first, second = flat[:ROWS], flat[ROWS:2 * ROWS]
    assert sorted(first) == sorted(second) == list(range(ROWS)) and first != second
    assert len(set(flat[2 * ROWS:])) == ROWS // 2


def test_seed_and_task_change_the_order(dataset: Path) -> None:
    base = rows_per_step([dataset], 1)
    assert rows_per_step([dataset], 1, seed=4) != base and rows_per_step([dataset], 1, task=1) != base


@pytest.mark.parametrize("new_world_size, budget_epochs", [(2, 1), (2, 2.5), (3, 2.5), (1, 2.5)])
def test_resume_at_a_random_step_continues_the_uninterrupted_stream(
        dataset: Path, new_world_size: int, budget_epochs: float) -> None:
    budget = int(budget_epochs * EPOCH_TOKENS)
    uninterrupted = rows_per_step([dataset], 1, token_budget=budget)
    stop = random.Random(new_world_size).randrange(1, len(uninterrupted))
    if budget_epochs > 1:
        stop = ROWS // GLOBAL_BATCH + 1  # just past the epoch boundary
    states = []
    for rank in range(2):
        loader = make_loader([dataset], rank=rank, world_size=2, token_budget=budget, num_workers=1)
        batches = iter(loader)
        for _ in range(stop * loader.accum_steps):
            next(batches)
        states.append(loader.state_dict())
    assert states[0] == states[1] and states[0]["step"] == stop
    assert states[0]["epochs"] == [stop * GLOBAL_BATCH // ROWS]
    resumed = rows_per_step([dataset], new_world_size, 1, state=states[0], token_budget=budget)
    assert resumed == uninterrupted[stop:]


def test_state_inside_a_step_resumes_with_the_same_world_size_only(dataset: Path) -> None:
    loader = make_loader([dataset], world_size=2)
    batches = iter(loader)
    next(batches)
    state = loader.state_dict()
    expected = [inputs[:, 0].tolist() for inputs, _ in batches]
    again = make_loader([dataset], world_size=2)
    again.load_state_dict(state)
    assert [inputs[:, 0].tolist() for inputs, _ in again] == expected
    with pytest.raises(ValueError, match="inside a step"):
        make_loader([dataset], world_size=3).load_state_dict(state)


def test_mixed_stream_follows_weights_and_is_exact_under_resume(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_dataset(first, numbered_rows(60), 9, 60)
    write_dataset(second, numbered_rows(60, first=1000), 9, 60)
    arguments = dict(weights=[3, 1], token_budget=120 * SEQ_LEN)
    steps = rows_per_step([first, second], 1, **arguments)
    flat = list(itertools.chain.from_iterable(steps))
    from_second = [row for row in flat if row >= 1000]
    assert 15 <= len(from_second) <= 45 and len(set(from_second)) == len(from_second)
    assert steps == rows_per_step([first, second], 3, 2, **arguments)
    loader = make_loader([first, second], **arguments)
    batches = iter(loader)
    for _ in range(4 * loader.accum_steps):
        next(batches)
    assert rows_per_step([first, second], 2, state=loader.state_dict(), **arguments) == steps[4:]


def test_state_of_other_data_is_refused(dataset: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_dataset(other, numbered_rows(ROWS, first=7), 9, 45)
    state = make_loader([other]).state_dict()
    with pytest.raises(ShardError, match="fingerprints"):
        make_loader([dataset]).load_state_dict(state)


@pytest.mark.parametrize("arguments, message", [
    (dict(global_batch_size=10, world_size=3), "global_batch_size=10 is not a multiple of data.micro_batch_size=2 x world size 3"),
    (dict(seq_len=16), "manifest.json: seq_len is 8, the loader was asked for 16"),
    (dict(tokenizer="byte"), "manifest.json: tokenizer is test .*expected byte"),
    (dict(token_budget=10), "less than one step"),
])
def test_bad_arguments_are_refused_with_the_reason(dataset: Path, arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_loader([dataset], **arguments)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_corrupt_block_fails_fast_naming_shard_and_block(tmp_path: Path, num_workers: int) -> None:
    manifest = write_dataset(tmp_path, numbered_rows(ROWS), 9, 45)
    block = manifest.shards[1].blocks[2]
    path = tmp_path / shard_name(1)
    data = bytearray(path.read_bytes())
    data[block.offset + block.size - 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=f"{shard_name(1)} block 2"):
        list(make_loader([tmp_path], num_workers=num_workers))


def test_truncated_shard_is_refused_before_training(tmp_path: Path) -> None:
    write_dataset(tmp_path, numbered_rows(ROWS), 9, 45)
    path = tmp_path / shard_name(2)
    path.write_bytes(path.read_bytes()[:-700])
    with pytest.raises(ShardError, match=f"{shard_name(2)}: .* bytes, manifest says"):
        make_loader([tmp_path])


def test_eval_batches_are_the_first_rows_in_file_order(dataset: Path) -> None:
    batches = list(iter_eval_batches(dataset, seq_len=SEQ_LEN, batch_size=4, max_tokens=50 * SEQ_LEN))
    assert [len(inputs) for inputs, _ in batches] == [4] * 12 + [2]
    rows = torch.cat([inputs for inputs, _ in batches])
    assert rows[:, 0].tolist() == list(range(50))
    np.testing.assert_array_equal(torch.cat([t for _, t in batches])[:, -1].numpy(), np.full(50, SEQ_LEN))
