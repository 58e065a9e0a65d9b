"""Probes are runs of their own in RUN/probes/<tag>/: exact resume after SIGKILL, a clean stop on USR1 with the
requeue exit code, and `probe --resubmit` for failed probes once the trainer has finished.

Every test probes the last checkpoint of `zero3_reference` (conftest.py) in a copy of that run, under one
probe config: 24 steps of 8 x 32 tokens on vi, evaluated at steps 0, 6, 12, 18 and 24, with a checkpoint
every 3 steps. Probe processes get one thread each, as the `local` executor gives them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from plasticity_dist.cli import main
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.engine.preemption import REQUEUE_EXIT_CODE
from plasticity_dist.probe.queue import ProbeQueue
from runs import REPO, copy_for_probing, kill_process_group, probe_result, wait_for

PROBE_RUN = ["probe.dataset=vi", "probe.tokens=6144", "probe.eval_points=5", "probe.checkpoint_every_steps=3",
             "probe.executor=local"]
EVAL_STEPS = [0, 6, 12, 18, 24]
PROBE_TIMEOUT_S = 600  # the test machine runs several DeepSpeed processes at once
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_copy(zero3_reference, dest):
    """A copy of the reference run (without its probes) whose config holds PROBE_RUN; returns its checkpoint."""
    return copy_for_probing(zero3_reference, dest / "run", PROBE_RUN)


def probe_command(checkpoint):
    return [sys.executable, "-m", "plasticity_dist.cli", "probe", "--checkpoint", str(checkpoint)]


def probe(checkpoint):
    return subprocess.run(probe_command(checkpoint), cwd=REPO, env=ONE_THREAD, capture_output=True, text=True,
                          timeout=PROBE_TIMEOUT_S)


def start_probe(checkpoint):
    log = open(checkpoint.parent.parent / "probe.log", "ab")
    return subprocess.Popen(probe_command(checkpoint), cwd=REPO, env=ONE_THREAD, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def saved_step(probe_run):
    """The step of the probe run's latest checkpoint (0 before its first)."""
    return int(probe_run.latest.read_text()[4:13]) if probe_run.latest.is_file() else 0


def records(probe_run, event):
    return [record for record in map(json.loads, probe_run.metrics.read_text().splitlines()) if record["event"] == event]


@pytest.fixture(scope="module")
def uninterrupted(zero3_reference, tmp_path_factory):
    checkpoint = run_copy(zero3_reference, tmp_path_factory.mktemp("uninterrupted"))
    finished = probe(checkpoint)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return probe_result(checkpoint)


def assert_same_curve(result, reference):
    assert result["eval_tokens"] == reference["eval_tokens"] == [step * 256 for step in EVAL_STEPS]
    assert result["val_losses"] == reference["val_losses"]  # exactly: CPU resume is bitwise
    assert result["auc"] == reference["auc"]


def test_probe_killed_mid_way_resumes_to_exactly_the_uninterrupted_curve_and_auc(zero3_reference, uninterrupted,
                                                                                  tmp_path):
    checkpoint = run_copy(zero3_reference, tmp_path)
    layout = RunLayout.of_checkpoint(checkpoint)
    probe_run = layout.probe_run(checkpoint.name)
    process = start_probe(checkpoint)
    # past the curve's second point (step 6), so the checkpoint must carry the points measured so far
    wait_for(lambda: saved_step(probe_run) >= 9 or process.poll() is not None, timeout=PROBE_TIMEOUT_S,
             what="a probe checkpoint past step 9")
    kill_process_group(process)
    killed_at = saved_step(probe_run)
    assert killed_at < 24 and not layout.probe_result(checkpoint.name).exists(), "the probe ended before the kill"

    finished = probe(checkpoint)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"resumed from {probe_run.checkpoint('')}" in finished.stderr
    assert_same_curve(probe_result(checkpoint), uninterrupted)
    assert sorted(path.name for path in layout.probes.glob(f"{checkpoint.name}*")) == [
        checkpoint.name, f"{checkpoint.name}.json"]
    assert not probe_run.checkpoints.exists()  # deleted on completion; config and metrics stay
    assert [r["step"] for r in records(probe_run, "step")] == list(range(1, 25))
    assert [r["step"] for r in records(probe_run, "eval")] == EVAL_STEPS


def test_usr1_stops_a_probe_at_a_checkpoint_with_the_requeue_code_and_the_rerun_ends_with_the_same_auc(
        zero3_reference, uninterrupted, tmp_path):
    checkpoint = run_copy(zero3_reference, tmp_path)
    layout = RunLayout.of_checkpoint(checkpoint)
    probe_run = layout.probe_run(checkpoint.name)
    process = start_probe(checkpoint)
    wait_for(lambda: probe_run.metrics.is_file() and '"event": "step"' in probe_run.metrics.read_text()
             or process.poll() is not None, timeout=PROBE_TIMEOUT_S, what="the probe's first step")
    process.send_signal(signal.SIGUSR1)
    assert process.wait(timeout=PROBE_TIMEOUT_S) == REQUEUE_EXIT_CODE
    stopped_at = int(probe_run.preempted.read_text())
    assert 0 < stopped_at < 24 and saved_step(probe_run) == stopped_at
    assert not layout.probe_result(checkpoint.name).exists()

    finished = probe(checkpoint)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert_same_curve(probe_result(checkpoint), uninterrupted)


def test_resubmit_completes_a_failed_probe_after_the_trainer_has_finished(zero3_reference, uninterrupted, tmp_path,
                                                                          capsys):
    checkpoint = run_copy(zero3_reference, tmp_path)
    run_dir = checkpoint.parent.parent
    queue = ProbeQueue(run_dir)
    queue.add(checkpoint.name)
    (request,) = queue.open_requests()
    queue.update({**request, "attempts": 3, "failed": True})  # out of retries while the trainer ran
    assert main(["probe", "--pending", str(run_dir)]) == 0
    assert capsys.readouterr().out.split("\t")[:3] == [checkpoint.name, "failed", "attempts 3"]

    assert main(["probe", "--resubmit", str(run_dir)]) == 0
    assert queue.open_requests() == []
    assert_same_curve(probe_result(checkpoint), uninterrupted)
    assert (RunLayout(run_dir).probe_log(checkpoint.name, 4)).is_file()
