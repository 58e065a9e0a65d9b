"""The trainer with diagnostics and every mitigation on, under ZeRO-3 on 2 ranks: what it logs, and an
exact resume (the callbacks' state travels in the checkpoint)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from runs import (assert_same_weights, final_weights, kill_process_group, latest_checkpoint, start_training,
                  step_records, tiny_overrides, train, train_to_end, wait_for)
from test_zero_callbacks import DIAGNOSTIC_KEYS, TASK_END_KEYS

MITIGATIONS = dict(
    launch__zero_stage=3, diagnostics__every_steps=8, mitigations__shrink_perturb__enabled="true",
    mitigations__l2_init__enabled="true", mitigations__redo__enabled="true", mitigations__redo__every_steps=6,
    mitigations__cbp__enabled="true", mitigations__cbp__maturity=4, mitigations__cbp__replacement_rate=0.01,
    mitigations__replay__enabled="true", mitigations__replay__fraction=0.25, mitigations__nap__enabled="true",
    mitigations__spectral_reg__enabled="true", mitigations__spectral_reg__weight=1e-3,
    mitigations__snr__enabled="true", mitigations__snr__threshold=1e-3,
    # resets at steps 15, 30, 45, 60: the resumed run's step-40 checkpoint holds a tortoise unlike its weights
    mitigations__hare_tortoise__enabled="true", mitigations__hare_tortoise__decay=0.9,
    mitigations__hare_tortoise__every_steps=15,
)


@pytest.fixture(scope="module")
def mitigated_run(data_root, tmp_path_factory):
    return train_to_end(tmp_path_factory.mktemp("mitigated") / "run", tiny_overrides(data_root, **MITIGATIONS))


def records(run_dir, event):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["event"] == event]


def test_diagnostics_are_logged_every_interval_and_at_task_ends(mitigated_run):
    diagnostics = records(mitigated_run, "diagnostics")
    assert [(r["step"], r["task_end"]) for r in diagnostics] == [
        (8, False), (16, False), (24, False), (32, True), (40, False), (48, False), (56, False), (64, True)]
    for record in diagnostics:
        assert all((key in record) == (record["task_end"] or key not in TASK_END_KEYS) for key in DIAGNOSTIC_KEYS)
        assert {"srank_l0", "dormant_ratio_l0", "attn_entropy_l0"} <= record.keys()  # the 100K model's blocks
    assert diagnostics[3]["tokens"] == 8192 and diagnostics[3]["task"] == "en"


def test_mitigations_are_recorded_and_training_still_learns(mitigated_run):
    config = yaml.safe_load((mitigated_run / "config.yaml").read_text())
    assert all(section["enabled"] for section in config["mitigations"].values())
    losses = [r["loss"] for r in step_records(mitigated_run)]
    assert len(losses) == 64 and losses[31] < losses[0] - 1.0
    diagnostics = records(mitigated_run, "diagnostics")
    assert diagnostics[4]["param_norm"] < 0.6 * diagnostics[3]["param_norm"]  # shrunk by 0.4 at the task boundary
    state = json.loads((latest_checkpoint(mitigated_run) / "trainer_state.json").read_text())["callbacks"]
    assert any(steps < 64 for row in state["snr"]["observed"] for steps in row)  # SNR reset units during the run
    tortoise_files = sorted(path.name for path in (latest_checkpoint(mitigated_run) / "rank_tensors").iterdir())
    assert tortoise_files == ["rank-00000.safetensors", "rank-00001.safetensors"]  # Hare & Tortoise's, per rank


def test_resume_with_mitigations_matches_uninterrupted_run(data_root, mitigated_run, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(data_root, checkpoint__every_steps=10, **MITIGATIONS)
    first = start_training(run_dir, overrides)
    wait_for(lambda: len(step_records(run_dir)) >= 45, what="step 45")  # mid-task 2, past the step-40 checkpoint
    kill_process_group(first)
    assert latest_checkpoint(run_dir).name.startswith("step000000040")
    train_to_end(run_dir, overrides)
    strip_time = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")} for r in rs]
    for event in ("step", "diagnostics", "task_end"):  # task_end: the forgetting evaluations of every language
        assert strip_time(records(run_dir, event)) == strip_time(records(mitigated_run, event)), event
    assert_same_weights(final_weights(run_dir), final_weights(mitigated_run))


def test_a_checkpoint_missing_a_ranks_tensors_is_not_resumed(data_root, mitigated_run, tmp_path):
    run_dir = shutil.copytree(mitigated_run, tmp_path / "run")
    (latest_checkpoint(run_dir) / "rank_tensors" / "rank-00001.safetensors").unlink()
    finished = train(run_dir, tiny_overrides(data_root, **MITIGATIONS))
    assert finished.returncode != 0
    assert "rank_tensors/rank-00001.safetensors is missing" in finished.stderr
