"""Checkpoints of a run: DeepSpeed ZeRO shards plus `trainer_state.json`, written crash-safe.

Layout: `RUN/checkpoints/<tag>/` holds what `accelerator.save_state` writes (the engine's shards under
`pytorch_model/`, one RNG file per rank), the callbacks' tensors where they have any (`rank_tensors/
rank-<r>.safetensors`, one file per rank holding that rank's share) and `trainer_state.json`, which is written
last: a checkpoint is complete only when it exists. Saving goes to `<tag>.tmp`, renamed when complete; then `latest` is
replaced atomically. Retention keeps the last `keep_last` checkpoints plus every one saved with
`keep=True` (cycle ends, which probes need) and any that `is_protected` names; a kept one whose probe
result exists is slimmed to its weights once older than the last `keep_last` (slim.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from plasticity_dist.common.fileio import atomic_write_json, atomic_write_text, fsync_dir, fsync_file
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.engine.checkpoint_files import (TRAINER_STATE, CheckpointError, consolidate_weights,
                                                    is_complete, read_trainer_state, require_complete)
from plasticity_dist.engine.slim import finish_interrupted, is_slim, is_work_folder, read_slim_weights, slim_checkpoint

RANK_TENSORS = "rank_tensors"  # the folder of the callbacks' per-rank tensors
RANK_TENSOR_RANKS = "rank_tensor_ranks"  # trainer state key: how many ranks saved a file there (absent: none)


def load_consolidated_weights(path: str | Path, expected_keys: list[str]) -> dict[str, Any]:
    """Full fp32 weights of a checkpoint, consolidated from its ZeRO shards by DeepSpeed's own utility (or,
    from a slim checkpoint, its saved weights).

    Works whatever the world size that saved it. Every key the model expects must come back: DeepSpeed's
    consolidation has dropped tied weights before (DeepSpeed #1896), and a missing one is an error here.
    """
    require_complete(Path(path))
    weights = read_slim_weights(Path(path)) if is_slim(Path(path)) else consolidate_weights(path)
    missing = sorted(set(expected_keys) - set(weights))
    if missing:
        raise CheckpointError(f"checkpoint {path}: consolidated weights lack {', '.join(missing)}")
    return weights


def complete_checkpoints(folder: Path) -> list[Path]:
    """The complete checkpoints in a run's checkpoints folder, in training order (their tags sort by step)."""
    return sorted(path for path in folder.iterdir()
                  if path.is_dir() and is_complete(path) and not is_work_folder(path) and path.suffix != ".tmp")


class Checkpointer:
    def __init__(self, run_dir: str | Path, accelerator: Accelerator, keep_last: int,
                 is_protected: Callable[[str], bool] = lambda tag: False, slim_dtype: str | None = None) -> None:
        """`slim_dtype`: slim every probed checkpoint older than the last `keep_last` to weights in this dtype
        once its probe result exists (None: keep them whole)."""
        layout = RunLayout(run_dir)
        self.layout = layout
        self.slim_dtype = slim_dtype
        self.directory = layout.checkpoints
        self.latest_pointer = layout.latest
        self.accelerator = accelerator
        self.keep_last = keep_last
        self.is_protected = is_protected

    def latest(self) -> Path | None:
        """The newest complete checkpoint, as named by `latest`."""
        pointer = self.latest_pointer
        if not pointer.is_file():
            return None
        path = self.directory / pointer.read_text().strip()
        if not is_complete(path):
            raise CheckpointError(f"{pointer} names {path}, which is not a complete checkpoint")
        return path

    def resolve(self, resume: str) -> Path | None:
        """`auto`: the latest checkpoint if any; `never`: none; anything else: that checkpoint folder."""
        if resume == "never":
            return None
        if resume == "auto":
            return self.latest()
        read_trainer_state(resume)
        if is_slim(Path(resume)):
            full = [path.name for path in complete_checkpoints(self.directory) if not is_slim(path)]
            raise CheckpointError(f"checkpoint {resume} is slim (weights only, no optimizer state) and cannot be "
                                  f"resumed; the newest full checkpoint is {full[-1] if full else 'none'}")
        return Path(resume)

    def save(self, tag: str, trainer_state: dict[str, Any], keep: bool,
             rank_tensors: dict[str, torch.Tensor] | None = None) -> Path:
        """Every rank writes its shards and its `rank_tensors` (the same keys on every rank); the main process
        completes, publishes and prunes."""
        final = self.directory / tag
        staging = self.directory / f"{tag}.tmp"
        if self.accelerator.is_main_process:
            self.directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(staging))
        if rank_tensors:
            self._write_rank_tensors(staging, rank_tensors)
            trainer_state = {**trainer_state, RANK_TENSOR_RANKS: self.accelerator.num_processes}
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            atomic_write_json(staging / TRAINER_STATE, {**trainer_state, "tag": tag, "keep": keep})
            shutil.rmtree(final, ignore_errors=True)  # a re-save of the same tag after a resume
            staging.rename(final)
            fsync_dir(self.directory)
            atomic_write_text(self.latest_pointer, tag + "\n")
            self._prune()
        self.accelerator.wait_for_everyone()
        return final

    def load(self, path: Path) -> dict[str, Any]:
        """Restore the engine (model, optimizer, RNG) from `path` and return its trainer state."""
        trainer_state = read_trainer_state(path)
        try:
            self.accelerator.load_state(str(path))
        except Exception as error:  # DeepSpeed raises many types; name the checkpoint either way
            raise CheckpointError(f"checkpoint {path} could not be loaded: {type(error).__name__}: {error}") from error
        return trainer_state

    def _rank_tensor_file(self, checkpoint: Path) -> Path:
        return checkpoint / RANK_TENSORS / f"rank-{self.accelerator.process_index:05d}.safetensors"

    def _write_rank_tensors(self, staging: Path, tensors: dict[str, torch.Tensor]) -> None:
        path = self._rank_tensor_file(staging)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({key: tensor.detach().cpu().contiguous() for key, tensor in tensors.items()}, str(path))
        fsync_file(path)
        fsync_dir(path.parent)

    def load_rank_tensors(self, path: Path, trainer_state: dict[str, Any]) -> dict[str, torch.Tensor]:
        """This rank's callback tensors saved in checkpoint `path`, whose trainer state `load` returned (empty when
        it holds none), on this rank's device. Each file holds one rank's share, so they load only on as many
        ranks as saved them."""
        saved_by = trainer_state.get(RANK_TENSOR_RANKS)
        if saved_by is None:
            return {}
        if saved_by != self.accelerator.num_processes:
            raise CheckpointError(f"checkpoint {path}: its callbacks' tensors are split over {saved_by} ranks, one "
                                  f"file each; resume it on {saved_by} ranks, not {self.accelerator.num_processes}")
        file = self._rank_tensor_file(path)
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path}: {file.relative_to(path)} is missing")
        return load_file(str(file), device=str(self.accelerator.device))

    def remove_unfinished(self) -> None:
        """Delete `<tag>.tmp` folders left by a process killed while saving."""
        if self.accelerator.is_main_process and self.directory.is_dir():
            finish_interrupted(self.directory)
            for staging in self.directory.glob("*.tmp"):
                shutil.rmtree(staging)
        self.accelerator.wait_for_everyone()

    def _prune(self) -> None:
        complete = complete_checkpoints(self.directory)
        for path in complete[: -self.keep_last]:
            if not read_trainer_state(path).get("keep") and not self.is_protected(path.name):
                shutil.rmtree(path)
        self.slim_probed()

    def slim_probed(self) -> None:
        """Slim each kept checkpoint older than the last `keep_last` whose probe result exists (main process)."""
        if self.slim_dtype is None:
            return
        for path in complete_checkpoints(self.directory)[: -self.keep_last]:
            state = read_trainer_state(path)
            if state.get("keep") and not state.get("slim") and self.layout.probe_result(path.name).is_file():
                slim_checkpoint(path, self.slim_dtype)
