"""Slim checkpoints: a probed checkpoint reduced to its consolidated weights and `trainer_state.json`.

A full checkpoint holds ~14 bytes per parameter (bf16 weights, fp32 master copy, Adam moments); probes,
export and report need only the weights (4 bytes in fp32, 2 in bf16). Slimming is crash-safe: the slim
copy is written to `<tag>.slim` (its `trainer_state.json` last), the full one is renamed to
`<tag>.unslimmed`, the slim one to `<tag>`, and only then is the full one deleted. A kill at any point
leaves the whole checkpoint or the slim one; `finish_interrupted` completes or undoes what a kill left.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from plasticity_dist.common.fileio import atomic_write_json, fsync_dir
from plasticity_dist.engine.checkpoint_files import (TRAINER_STATE, consolidate_weights, is_complete,
                                                     read_trainer_state)

SLIM_WEIGHTS = "model.safetensors"
STAGING_SUFFIX = ".slim"
REPLACED_SUFFIX = ".unslimmed"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TIED_PREFIX = "tied:"  # safetensors metadata key of a weight stored once under another name


def is_slim(path: Path) -> bool:
    return (path / SLIM_WEIGHTS).is_file()


def write_slim(weights: dict[str, torch.Tensor], trainer_state: dict[str, Any], folder: Path, dtype: str) -> None:
    """Write `weights` (tied ones, sharing storage, once) in `dtype` and then the trainer state to `folder`."""
    stored: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    names_by_memory: dict[tuple[int, tuple[int, ...], tuple[int, ...]], str] = {}
    for name, tensor in weights.items():
        memory = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride())  # consolidated weights share one buffer
        if memory in names_by_memory:
            tied[TIED_PREFIX + name] = names_by_memory[memory]
            continue
        names_by_memory[memory] = name
        stored[name] = tensor.detach().to(DTYPES[dtype]).contiguous().clone()
    folder.mkdir(parents=True)
    save_file(stored, str(folder / SLIM_WEIGHTS), metadata=tied)
    atomic_write_json(folder / TRAINER_STATE, {**trainer_state, "slim": True, "slim_dtype": dtype})
    fsync_dir(folder)


def read_slim_weights(path: Path) -> dict[str, torch.Tensor]:
    """A slim checkpoint's weights in fp32, tied names restored."""
    from safetensors import safe_open

    with safe_open(str(path / SLIM_WEIGHTS), framework="pt") as handle:
        metadata = handle.metadata() or {}
    weights = {name: tensor.float() for name, tensor in load_file(str(path / SLIM_WEIGHTS)).items()}
    for key, source in metadata.items():
        if key.startswith(TIED_PREFIX):
            weights[key[len(TIED_PREFIX):]] = weights[source]
    return weights


def slim_checkpoint(path: Path, dtype: str) -> None:
    """Replace the full checkpoint `path` by its slim form, crash-safe (see the module docstring)."""
    staging, replaced = path.with_name(path.name + STAGING_SUFFIX), path.with_name(path.name + REPLACED_SUFFIX)
    shutil.rmtree(staging, ignore_errors=True)
    state = read_trainer_state(path)
    write_slim(consolidate_weights(path), state, staging, dtype)
    path.rename(replaced)
    staging.rename(path)
    fsync_dir(path.parent)
    shutil.rmtree(replaced)


def finish_interrupted(directory: Path) -> None:
    """Complete a slimming a kill stopped after the full checkpoint was moved aside, or undo one stopped
    before; then delete the unfinished slim copies."""
    for replaced in directory.glob("*" + REPLACED_SUFFIX):
        final = directory / replaced.name[: -len(REPLACED_SUFFIX)]
        staging = final.with_name(final.name + STAGING_SUFFIX)
        if not final.exists():
            (staging if is_complete(staging) else replaced).rename(final)
            fsync_dir(directory)
        shutil.rmtree(replaced, ignore_errors=True)
    for staging in directory.glob("*" + STAGING_SUFFIX):
        shutil.rmtree(staging)


def is_work_folder(path: Path) -> bool:
    """A slimming's staging or moved-aside folder: never a checkpoint of its own."""
    return path.name.endswith((STAGING_SUFFIX, REPLACED_SUFFIX))
