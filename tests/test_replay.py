"""Replay (`mitigations.replay`): each continual task serves the configured share of its rows from the
languages trained before it, by the loader's seeded mix, on any world size."""

from __future__ import annotations

import math

import pytest
import torch

from plasticity_dist.data.loader import ShardLoader
from plasticity_dist.study.config_files import load_config
from plasticity_dist.study.curriculum import build_tasks
from plasticity_dist.study.errors import ConfigError
from runs import TINY_CONFIG, tiny_overrides

FRACTION, TOKENS, SEQ_LEN = 0.25, 16_384, 32


def replay_tasks(data_root, fraction=FRACTION):
    config = load_config(TINY_CONFIG, overrides=tiny_overrides(
        data_root, mitigations__replay__enabled="true", mitigations__replay__fraction=fraction,
        curriculum__task_tokens=TOKENS, curriculum__cycles=2))
    return config, build_tasks(config)


def served_rows(config, task, world_size=1):
    """Every input row the task's loaders hand out, over all ranks, as one tensor."""
    rows = []
    for rank in range(world_size):
        loader = ShardLoader(task.datasets, seq_len=SEQ_LEN, micro_batch_size=4, global_batch_size=8,
                             token_budget=task.tokens, rank=rank, world_size=world_size, seed=config.data.seed,
                             task=task.index, num_workers=0, weights=task.weights)
        rows += [inputs for inputs, _ in loader]
    return torch.cat(rows)


def english_share(rows: torch.Tensor) -> float:
    """Synthetic English is ASCII: its rows hold no byte in 128-255 (zh rows are multi-byte UTF-8; 256 is the
    end-of-text id of both)."""
    return (~((rows >= 128) & (rows < 256)).any(dim=1)).float().mean().item()


def test_a_task_replays_the_configured_share_of_rows_from_the_languages_before_it(data_root):
    config, tasks = replay_tasks(data_root)
    first_en, first_zh, second_en = tasks[:3]
    assert first_en.weights is None and english_share(served_rows(config, first_en)) == 1.0  # nothing before it
    assert first_zh.weights == (1 - FRACTION, FRACTION) and first_zh.val_datasets == first_zh.datasets[:1]
    rows = served_rows(config, first_zh)
    assert len(rows) == TOKENS // SEQ_LEN  # the task's budget is unchanged by replay
    standard_error = math.sqrt(FRACTION * (1 - FRACTION) / len(rows))
    assert abs(english_share(rows) - FRACTION) < 3 * standard_error  # English rows: replayed
    assert abs((1 - english_share(served_rows(config, second_en))) - FRACTION) < 3 * standard_error  # zh replayed


def test_the_replayed_rows_do_not_depend_on_the_world_size(data_root):
    config, tasks = replay_tasks(data_root)
    one_rank, two_ranks = served_rows(config, tasks[1]), served_rows(config, tasks[1], world_size=2)
    assert sorted(map(tuple, one_rank.tolist())) == sorted(map(tuple, two_ranks.tolist()))


def test_replay_refuses_a_whole_fraction_and_a_stationary_run(data_root):
    with pytest.raises(ConfigError, match="mitigations.replay.fraction=1.0"):
        replay_tasks(data_root, fraction=1.0)
    config = load_config(TINY_CONFIG, overrides=["mitigations.replay.enabled=true", "curriculum.problem=stationary",
                                                 "curriculum.total_tokens=1000", "curriculum.probe_every_tokens=500"])
    with pytest.raises(ConfigError, match="mitigations.replay"):
        build_tasks(config)
