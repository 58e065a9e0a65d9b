"""Slim checkpoints (checkpoint.slim_after_probe): a probed checkpoint older than the last keep_last becomes its
fp32 weights and trainer_state.json, 4x smaller on CPU (16 bytes per parameter: fp32 model states, fp32 master
copy and Adam's two moments, down to 4; on a GPU bf16 run, 14 down to 4, or 2 with slim_dtype=bf16); probes read
it to the same AUC, resuming from it is refused, and a SIGKILL while slimming loses nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from plasticity_dist.engine.checkpoint import complete_checkpoints, load_consolidated_weights
from plasticity_dist.engine.checkpoint_files import read_trainer_state
from plasticity_dist.engine.slim import finish_interrupted, is_slim, slim_checkpoint
from runs import (REPO, TINY_PROBE, assert_same_weights, copy_for_probing, probe_result, train, train_to_end,
                  tiny_overrides)

INIT_TAG = "step000000000-init"


@pytest.fixture(scope="module")
def probed_run(data_root, tmp_path_factory):
    """One cycle of one task with local probes of the initial weights and the cycle end, keeping the last 1:
    at the end the initial checkpoint, probed and older than the last, is slim; the cycle end stays whole."""
    overrides = tiny_overrides(data_root, curriculum__tasks="[{name: en}]", checkpoint__keep_last=1,
                               **{**TINY_PROBE, "probe__enabled": "true"})
    return train_to_end(tmp_path_factory.mktemp("slim") / "run", overrides, processes=1)


def folder_bytes(folder):
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def test_probed_checkpoint_older_than_keep_last_is_slimmed_to_a_quarter(probed_run):
    init, cycle_end = complete_checkpoints(probed_run / "checkpoints")
    assert init.name == INIT_TAG and is_slim(init) and not is_slim(cycle_end)
    assert read_trainer_state(init)["slim"] and not (init / "pytorch_model").exists()
    params = sum(t.numel() for t in {id(t): t for t in load_consolidated_weights(init, []).values()}.values())
    assert (init / "model.safetensors").stat().st_size == pytest.approx(4 * params, rel=0.01)  # tied weights once
    assert folder_bytes(cycle_end) / folder_bytes(init) == pytest.approx(4, rel=0.05)
    assert sorted(path.name for path in (probed_run / "checkpoints").iterdir()) == sorted([INIT_TAG, cycle_end.name, "latest"])


def probe_auc(checkpoint):
    probed = subprocess.run([sys.executable, "-m", "plasticity_dist.cli", "probe", "--checkpoint", str(checkpoint)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert probed.returncode == 0, probed.stderr[-3000:]
    return probe_result(checkpoint)


def test_probe_of_a_slim_checkpoint_gives_exactly_the_auc_of_the_full_one(probed_run, tmp_path):
    """Both probes run the same way (the run's own probe ran beside its trainer, with other thread counts)."""
    full = copy_for_probing(probed_run, tmp_path / "full", [])
    slim = copy_for_probing(probed_run, tmp_path / "slim", [])
    slim_checkpoint(slim, "fp32")
    assert is_slim(slim) and not is_slim(full)
    from_full, from_slim = probe_auc(full), probe_auc(slim)
    assert from_slim["val_losses"] == from_full["val_losses"] and from_slim["auc"] == from_full["auc"]


def test_resuming_from_a_slim_checkpoint_is_refused_naming_the_newest_full_one(probed_run, data_root, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(probed_run, copy)
    cycle_end = complete_checkpoints(copy / "checkpoints")[-1]
    overrides = tiny_overrides(data_root, curriculum__tasks="[{name: en}]", curriculum__cycles=2,
                               resume=copy / "checkpoints" / INIT_TAG)
    refused = train(copy, overrides, processes=1)
    assert refused.returncode == 2
    message = [line for line in refused.stderr.splitlines() if "error:" in line]
    assert message == [f"plasticity-dist train: error: checkpoint {copy / 'checkpoints' / INIT_TAG} is slim (weights "
                       f"only, no optimizer state) and cannot be resumed; the newest full checkpoint is {cycle_end.name}"]


SLIM_AND_DIE = """
import os, signal, sys
from pathlib import Path
import plasticity_dist.engine.slim as slim
point, path = sys.argv[1], Path(sys.argv[2])
die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if point == "writing":  # the slim copy's weights are written, its trainer_state.json not yet
    slim.atomic_write_json = die
if point in ("between_renames", "before_delete"):
    renames, rename = [], Path.rename
    def rename_then_maybe_die(self, target):
        renames.append(target)
        if point == "between_renames" and len(renames) == 2:
            die()
        return rename(self, target)
    Path.rename = rename_then_maybe_die
if point == "before_delete":  # the slim copy is in place, the moved-aside full one not yet deleted
    rmtree = slim.shutil.rmtree
    slim.shutil.rmtree = lambda folder, **kwargs: die() if str(folder).endswith(slim.REPLACED_SUFFIX) else rmtree(folder, **kwargs)
slim.slim_checkpoint(path, "fp32")
"""


@pytest.mark.parametrize("kill_point", ["writing", "between_renames", "before_delete"])
def test_a_sigkill_while_slimming_leaves_the_whole_or_the_slim_checkpoint(probed_run, kill_point, tmp_path):
    source = complete_checkpoints(probed_run / "checkpoints")[-1]
    checkpoint = tmp_path / "checkpoints" / source.name
    shutil.copytree(source, checkpoint)
    weights = load_consolidated_weights(checkpoint, [])
    killed = subprocess.run([sys.executable, "-c", SLIM_AND_DIE, kill_point, str(checkpoint)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-3000:]
    finish_interrupted(checkpoint.parent)  # what the next trainer start does first
    assert [path.name for path in checkpoint.parent.iterdir()] == [source.name]
    assert is_slim(checkpoint) == (kill_point != "writing")
    assert_same_weights(load_consolidated_weights(checkpoint, []), weights)


def test_export_of_a_slim_checkpoint_gives_the_logits_of_its_weights(probed_run, tmp_path):
    import torch
    from transformers import GPT2LMHeadModel

    from plasticity_dist.cli import main as cli_main
    from plasticity_dist.study.config_files import load_config
    from plasticity_dist.model.gpt import GPT
    from plasticity_dist.model.presets import get_preset

    slim = probed_run / "checkpoints" / INIT_TAG
    assert cli_main(["export", "--checkpoint", str(slim), "--out", str(tmp_path / "hf")]) == 0
    config = load_config(probed_run / "config.yaml")
    ours = GPT(get_preset(config.model.preset).gpt_config(257, config.data.seq_len))
    ours.load_state_dict(load_consolidated_weights(slim, list(ours.state_dict())))
    ids = torch.randint(0, 257, (2, config.data.seq_len))
    with torch.no_grad():
        exported = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()(ids).logits
        torch.testing.assert_close(exported[..., :257], ours.eval()(ids)[..., :257], rtol=1e-4, atol=1e-4)
