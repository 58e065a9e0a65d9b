"""The files of a checkpoint folder, read without an engine: whether it is complete, its trainer state and its
weights consolidated whole. Both the checkpointer and slimming read checkpoints through here."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from accelerate.utils.constants import MODEL_NAME

TRAINER_STATE = "trainer_state.json"
ENGINE_FOLDER = MODEL_NAME  # the tag accelerate's save_state gives the DeepSpeed engine's shards
STAGE0_MODEL_STATES = "mp_rank_00_model_states.pt"  # without ZeRO, rank 0 saves the whole engine in this file


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or unreadable; the message names it."""


def is_complete(path: Path) -> bool:
    return (path / TRAINER_STATE).is_file()


def require_complete(path: Path) -> None:
    """A clear error unless `path` is a complete checkpoint (its trainer state written, which is written last)."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not is_complete(path):
        raise CheckpointError(f"checkpoint {path} is incomplete (no {TRAINER_STATE}); it was not finished")


def read_trainer_state(path: str | Path) -> dict[str, Any]:
    """The trainer state of a complete checkpoint; a clear error for anything else."""
    path = Path(path)
    require_complete(path)
    try:
        return json.loads((path / TRAINER_STATE).read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path}: {TRAINER_STATE} is corrupt: {error}") from None


def consolidate_weights(path: str | Path) -> dict[str, Any]:
    """Full fp32 weights of a full (not slim) checkpoint: consolidated from its ZeRO shards by DeepSpeed, or, saved
    without ZeRO (stage 0), the whole model in the engine's one model-states file."""
    engine_files = Path(path) / ENGINE_FOLDER
    if (engine_files / STAGE0_MODEL_STATES).is_file() and not any(engine_files.glob("*zero_pp_rank_*")):
        try:
            states = torch.load(engine_files / STAGE0_MODEL_STATES, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, pickle.UnpicklingError) as error:
            raise CheckpointError(f"checkpoint {path}: {ENGINE_FOLDER}/{STAGE0_MODEL_STATES} is unreadable: "
                                  f"{error}") from None
        return {name: tensor.float() for name, tensor in states["module"].items()}
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    try:
        return get_fp32_state_dict_from_zero_checkpoint(str(path), tag=ENGINE_FOLDER)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {path}: DeepSpeed could not consolidate its shards: {error}") from None
