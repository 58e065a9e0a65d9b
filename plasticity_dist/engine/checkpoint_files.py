"""The files of a checkpoint folder, read without an engine: whether it is complete, its trainer state and its
ZeRO shards consolidated to full weights. Both the checkpointer and slimming read checkpoints through here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accelerate.utils.constants import MODEL_NAME

TRAINER_STATE = "trainer_state.json"
ENGINE_FOLDER = MODEL_NAME  # the tag accelerate's save_state gives the DeepSpeed engine's shards


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


def consolidate_zero_shards(path: str | Path) -> dict[str, Any]:
    """Full fp32 weights of a full (not slim) checkpoint, consolidated from its ZeRO shards by DeepSpeed."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    try:
        return get_fp32_state_dict_from_zero_checkpoint(str(path), tag=ENGINE_FOLDER)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {path}: DeepSpeed could not consolidate its shards: {error}") from None
