"""The run-directory lock: one owner at a time, stale owners taken over, a clear refusal otherwise."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from plasticity_dist.common.run_lock import LOCK_FILE, RunLock, RunLockedError


def write_owner(run_dir, **fields) -> None:
    record = {"host": "gpu-node-17", "pid": 4242, "slurm_job_id": "", "token": "theirs", "started": time.time(),
              "heartbeat": time.time(), **fields}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_FILE).write_text(json.dumps(record))


def owner(run_dir) -> dict:
    return json.loads((run_dir / LOCK_FILE).read_text())


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_acquire_writes_the_owner_record_and_release_removes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "981")
    lock = RunLock(tmp_path / "run")
    lock.acquire()
    record = owner(tmp_path / "run")
    assert (record["host"], record["pid"], record["slurm_job_id"]) == (socket.gethostname(), lock.owner["pid"], "981")
    lock.release()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_live_owner_is_named_in_the_refusal(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    write_owner(tmp_path, slurm_job_id="77")
    with pytest.raises(RunLockedError) as refused:
        RunLock(tmp_path).acquire()
    message = str(refused.value)
    assert "host gpu-node-17, pid 4242, Slurm job 77" in message and str(tmp_path / LOCK_FILE) in message
    assert "\n" not in message
    assert owner(tmp_path)["token"] == "theirs"  # the holder's record is untouched


def test_a_second_lock_in_a_live_process_on_this_host_is_refused(tmp_path):
    first = RunLock(tmp_path)
    first.acquire()
    with pytest.raises(RunLockedError, match=f"pid {first.owner['pid']}"):
        RunLock(tmp_path).acquire()
    first.release()


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    write_owner(tmp_path, host=socket.gethostname(), pid=dead_pid())
    lock = RunLock(tmp_path)
    lock.acquire()
    assert owner(tmp_path)["token"] == lock.owner["token"]
    lock.release()


def test_a_lock_without_heartbeat_is_taken_over_from_another_host(tmp_path):
    write_owner(tmp_path, heartbeat=time.time() - 60)
    with pytest.raises(RunLockedError, match="last heartbeat 6[0-9] s ago"):
        RunLock(tmp_path, stale_after_s=120).acquire()
    lock = RunLock(tmp_path, stale_after_s=30)
    lock.acquire()
    assert owner(tmp_path)["token"] == lock.owner["token"]
    lock.release()


def test_a_requeue_of_the_same_slurm_job_takes_over_its_own_lock(tmp_path, monkeypatch):
    write_owner(tmp_path, slurm_job_id="5150")  # another host, fresh heartbeat: the job's previous node
    monkeypatch.setenv("SLURM_JOB_ID", "5151")
    with pytest.raises(RunLockedError):
        RunLock(tmp_path).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "5150")
    lock = RunLock(tmp_path)
    lock.acquire()
    assert owner(tmp_path)["token"] == lock.owner["token"]
    lock.release()


def test_a_lock_file_cut_short_by_a_crash_does_not_block_the_run(tmp_path):
    (tmp_path / LOCK_FILE).write_text('{"host": "gpu-no')
    lock = RunLock(tmp_path)
    lock.acquire()
    lock.release()


def test_the_heartbeat_keeps_the_record_fresh(tmp_path):
    lock = RunLock(tmp_path, heartbeat_s=0.05)
    lock.acquire()
    first = owner(tmp_path)["heartbeat"]
    time.sleep(0.3)
    assert owner(tmp_path)["heartbeat"] > first
    lock.release()


def test_a_holder_whose_lock_was_taken_over_finds_out_and_stops(tmp_path):
    lock = RunLock(tmp_path, heartbeat_s=0.05)
    lock.acquire()
    lock.check()
    write_owner(tmp_path)  # another trainer took it over (e.g. after this one was suspended for long)
    deadline = time.monotonic() + 5
    while not lock.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(RunLockedError, match="lost the run lock .* host gpu-node-17, pid 4242"):
        lock.check()
    lock.release()
    assert owner(tmp_path)["token"] == "theirs"  # release leaves the new owner's lock alone


def test_of_many_trainers_taking_over_one_stale_lock_exactly_one_wins(tmp_path):
    write_owner(tmp_path, heartbeat=0)
    contenders = [RunLock(tmp_path, stale_after_s=30) for _ in range(8)]
    start = threading.Barrier(len(contenders))
    outcomes: list[str] = []

    def contend(lock: RunLock) -> None:
        start.wait()
        try:
            lock.acquire()
            outcomes.append("won")
        except RunLockedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=contend, args=(lock,)) for lock in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["won"]
    winner = next(lock for lock in contenders if lock.owner is not None)
    assert owner(tmp_path)["token"] == winner.owner["token"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [LOCK_FILE]
    winner.release()
