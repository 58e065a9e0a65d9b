"""Probes from real ZeRO checkpoints: exact starting weights, untouched checkpoints, async local probes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys

import pytest

from plasticity_dist.cli import main
from plasticity_dist.engine.checkpoint import load_consolidated_weights
from plasticity_dist.probe.auc import curve_auc
from plasticity_dist.probe.queue import ProbeQueue
from plasticity_dist.report.markdown import write_report
from plasticity_dist.train.callbacks.evaluation import EvalPoint
from plasticity_dist.study.config_files import load_config
from plasticity_dist.study.errors import ConfigError
from plasticity_dist.train.probe_run import curve_fields, probe_config_hash
from runs import (REPO, TINY_PROBE, copy_for_probing, kill_process_group, latest_checkpoint, probe_result,
                  start_training, tiny_overrides, train_to_end, wait_for)

PROBE = {**TINY_PROBE, "probe__enabled": "true"}
# The tests that probe by hand take the last checkpoint of `zero3_reference` (conftest.py): a 2-rank ZeRO-3 run
# without probes of its own.


def probe(checkpoint, *args):
    return subprocess.run([sys.executable, "-m", "plasticity_dist.cli", "probe", "--checkpoint", str(checkpoint), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def tree_digest(folder):
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_probe_of_a_two_rank_zero3_checkpoint_starts_from_exactly_the_saved_weights(zero3_reference):
    checkpoint = latest_checkpoint(zero3_reference)
    before = tree_digest(checkpoint)
    finished = probe(checkpoint)
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads((zero3_reference / "probes" / f"{checkpoint.name}.json").read_text())
    task_end = [json.loads(line) for line in (zero3_reference / "metrics.jsonl").read_text().splitlines()
                if '"task_end"' in line][-1]
    # the trainer evaluated the same weights on the same split and tokens (probe.dataset = en) at its last task end
    assert result["val_losses"][0] == pytest.approx(task_end["probe_val_loss"], rel=1e-6)
    assert result["eval_tokens"] == [0, 2048, 4096]
    assert result["world_size"] == 1 and result["tasks_trained"] == 2
    weights = load_consolidated_weights(checkpoint, expected_keys=["tok_emb.weight", "lm_head.weight"])
    assert weights["lm_head.weight"].equal(weights["tok_emb.weight"])
    assert tree_digest(checkpoint) == before  # the probe only reads


def test_rerun_is_a_no_op_and_another_config_is_refused_unless_forced(zero3_reference, tmp_path):
    checkpoint = latest_checkpoint(zero3_reference)
    assert probe(checkpoint).returncode == 0  # makes the result if the test above did not run
    result_path = zero3_reference / "probes" / f"{checkpoint.name}.json"
    first = result_path.read_bytes()
    again = probe(checkpoint)
    assert again.returncode == 0 and "already done" in again.stderr + again.stdout
    assert result_path.read_bytes() == first
    other = tmp_path / "other.yaml"
    other.write_text((zero3_reference / "config.yaml").read_text().replace("lr: 0.003\n  executor", "lr: 0.001\n  executor"))
    refused = probe(checkpoint, "--config", str(other))
    assert refused.returncode == 2 and "--force" in refused.stderr


def test_log_spaced_probe_evaluates_at_step_0_then_log_spaced_token_counts(zero3_reference, tmp_path):
    checkpoint = copy_for_probing(zero3_reference, tmp_path / "run", ["probe.eval_spacing=log"])
    finished = probe(checkpoint)
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = probe_result(checkpoint)
    # 16 steps of 256 tokens, 3 points: step 0, then geomspace(1, 16, 2) = steps 1 and 16
    assert result["eval_tokens"] == [0, 256, 4096]
    assert result["auc_rule"] == "trapezoid_log_tokens"
    assert result["auc"] == pytest.approx(curve_auc(result["eval_tokens"], result["val_losses"], "log"))


def test_curve_fields_null_every_loss_from_the_first_non_finite_one_on():
    assert curve_fields([EvalPoint(*point) for point in [(0, 0, 3.0), (8, 2048, 2.5), (16, 4096, math.inf), (24, 6144, 2.0)]],
                        "linear") == {
        "eval_tokens": [0, 2048, 4096, 6144], "val_losses": [3.0, 2.5, None, None], "auc": None,
        "auc_rule": "trapezoid_linear_tokens", "auc_from_point": 0, "diverged": True, "diverged_at_tokens": 4096}
    finite = curve_fields([EvalPoint(0, 0, 4.0), EvalPoint(1, 1000, 2.0), EvalPoint(4, 4000, 1.0)], "linear")
    assert (finite["auc"], finite["diverged"], finite["diverged_at_tokens"]) == (1.875, False, None)


def test_the_auc_from_a_later_eval_point_leaves_the_points_before_it_out():
    curve = [EvalPoint(0, 0, 9.0), EvalPoint(1, 1000, 2.0), EvalPoint(4, 4000, 1.0)]
    late = curve_fields(curve, "linear", auc_from_point=1)
    assert (late["auc"], late["auc_from_point"], late["val_losses"]) == (1.5, 1, [9.0, 2.0, 1.0])


def test_auc_from_point_needs_two_eval_points_left_and_changes_the_probe_hash_only_when_set():
    control = REPO / "configs" / "control.yaml"
    whole = probe_config_hash(load_config(control))
    assert probe_config_hash(load_config(control, ["probe.auc_from_point=0"])) == whole
    assert probe_config_hash(load_config(control, ["probe.auc_from_point=5"])) != whole
    with pytest.raises(ConfigError, match=r"probe.auc_from_point=10 .* at most 9"):
        load_config(control, ["probe.auc_from_point=10"])


def test_a_probe_whose_loss_turns_nan_writes_a_diverged_result_that_the_report_shows(zero3_reference, tmp_path):
    run_dir = tmp_path / "run"
    checkpoint = copy_for_probing(zero3_reference, run_dir, ["probe.lr=1e30"])  # the first step blows up the weights
    finished = probe(checkpoint)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "diverged at 2,048 tokens" in finished.stderr
    text = (run_dir / "probes" / f"{checkpoint.name}.json").read_text()
    result = json.loads(text, parse_constant=lambda constant: pytest.fail(f"{constant} in a probe result"))
    assert result["diverged"] is True and result["auc"] is None and result["diverged_at_tokens"] == 2048
    assert result["eval_tokens"] == [0, 2048, 4096]  # trained to its budget: the eval grid of its run's probes
    assert math.isfinite(result["val_losses"][0]) and result["val_losses"][1:] == [None, None]
    summary = write_report([run_dir], tmp_path / "report")
    [record] = summary["runs"][0]["probes"]
    assert record["diverged"] is True and record["auc_pct_change"] is None
    assert " | diverged | " in (tmp_path / "report" / "report.md").read_text()


def test_missing_and_partial_checkpoints_are_named(zero3_reference, tmp_path, capsys):
    # in this process: both are refused before any work, so a process start of its own would only add time
    assert main(["probe", "--checkpoint", str(tmp_path / "checkpoints" / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    partial = zero3_reference / "checkpoints" / "step000000099-partial"
    partial.mkdir()
    try:
        assert main(["probe", "--checkpoint", str(partial)]) == 2
        refused = capsys.readouterr().err
        assert "incomplete" in refused and str(partial) in refused
    finally:
        partial.rmdir()


def test_local_probes_run_while_training_goes_on_and_cover_cycles_0_to_2(data_root, tmp_path):
    run_dir = tmp_path / "run"
    # the trainer must go on with cycle 2 while the probe of cycle 1 runs
    overrides = tiny_overrides(data_root, curriculum__tasks="[{name: en}]", curriculum__cycles=2,
                               **{**PROBE, "probe__tokens": 12288, "probe__dataset": "vi"})
    train_to_end(run_dir, overrides, processes=1)
    results = {r["cycle"]: r for r in map(json.loads, (p.read_text() for p in (run_dir / "probes").glob("*.json")))}
    assert sorted(results) == [0, 1, 2]
    cycle2_steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                    if '"event": "step"' in line and '"cycle": 2' in line]
    assert cycle2_steps[0]["time"] < results[1]["finished_at"]  # cycle 2 trained while probe 1 ran
    assert ProbeQueue(run_dir).open_requests() == []


def test_killed_probe_is_retried_on_resume(data_root, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(data_root, curriculum__tasks="[{name: en}]",
                               **{**PROBE, "probe__tokens": 12288, "probe__dataset": "vi"})
    trainer = start_training(run_dir, overrides, processes=1)
    queue = ProbeQueue(run_dir)
    wait_for(lambda: any(r["submissions"] for r in queue.open_requests()), what="a probe to start")
    started = [r for r in queue.open_requests() if r["submissions"]][0]
    os.killpg(started["submissions"][-1]["pid"], signal.SIGKILL)
    kill_process_group(trainer)
    train_to_end(run_dir, overrides, processes=1)
    assert (run_dir / "probes" / f"{started['checkpoint']}.json").is_file()
    assert len(list((run_dir / "probes" / "logs").glob(f"{started['checkpoint']}.attempt*.log"))) >= 2
