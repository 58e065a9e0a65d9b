"""One trainer per run directory: `RUN/lock`, an owner record created atomically and kept fresh by a heartbeat.

`flock` is not reliable on shared file systems (NFS, some Lustre mounts), so the lock is the file itself:
acquiring is an exclusive create (`O_CREAT | O_EXCL`, atomic on local file systems, NFSv3+ and Lustre) of a
JSON record naming the owner (host, pid, Slurm job id) and the time of its last heartbeat, which a thread
of the holder rewrites every `heartbeat_s`. A lock that exists can be taken over only when its owner is
provably gone: a dead pid on this host, the same Slurm job id (a requeue of this very job), or no heartbeat
for `stale_after_s` (its host died or lost the file system). A takeover renames the old record away first,
so of two trainers that both find it stale, only one can take it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import torch.distributed as dist

from plasticity_dist.common.fileio import atomic_write_json
from plasticity_dist.common.logging import get_logger
from plasticity_dist.common.processes import is_process_alive
from plasticity_dist.common.run_layout import RunLayout

log = get_logger()

LOCK_FILE = RunLayout(".").lock.name
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0  # 20 missed heartbeats: far beyond a busy file system's stalls
SETTLE_S = 0.5  # after creating the lock, before trusting it: far longer than a takeover's read-then-rename


class RunLockedError(RuntimeError):
    """Another live trainer holds the run directory; the message names it and the lock file."""


def _owner_record() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
            "token": uuid.uuid4().hex, "started": time.time(), "heartbeat": time.time()}


def _parse(text: str) -> dict[str, Any]:
    """An owner record; an unreadable one (cut short by a crash) counts as an owner that never beat, so
    it goes stale at once instead of blocking the run for good."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"host": "?", "pid": "?", "heartbeat": 0, "unreadable": text}


def _describe(owner: dict[str, Any]) -> str:
    job = f", Slurm job {owner['slurm_job_id']}" if owner.get("slurm_job_id") else ""
    return f"host {owner.get('host', '?')}, pid {owner.get('pid', '?')}{job}"


class RunLock:
    """The lock of one run directory, for the one process (global rank 0) that holds it for the run."""

    def __init__(self, run_dir: str | Path, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.path = RunLayout(run_dir).lock
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.owner: dict[str, Any] | None = None  # our record while we hold the lock
        self.lost = False  # set by the heartbeat when another trainer has taken the lock over
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lock, or raise RunLockedError naming its live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = _owner_record()
        while True:
            if self._create(owner):
                # A trainer that found the old record stale just before we created ours may set ours aside
                # by mistake (it puts it back unless a third was faster): trust only a record that stands.
                time.sleep(SETTLE_S)
            holder = self._read()
            if holder is None:  # released, or set aside by a takeover: try again
                continue
            if holder.get("token") == owner["token"]:
                break
            reason = self._takeover_reason(holder)
            if reason is None:
                age = time.time() - float(holder.get("heartbeat", 0))
                raise RunLockedError(
                    f"run directory {self.path.parent} is in use by {_describe(holder)} (lock file {self.path}, "
                    f"last heartbeat {age:.0f} s ago); stop that trainer first, or delete the lock file if "
                    f"it is gone (a lock without a heartbeat for {self.stale_after_s:.0f} s is taken over)")
            if self._set_aside(holder):
                log.warning(f"taking over {self.path} from {_describe(holder)}: {reason}")
        self.owner = owner
        self._heartbeat = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        if self.owner is None:
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._is_ours():
            self.path.unlink(missing_ok=True)
        self.owner = None

    def check(self) -> None:
        """Raise once another trainer has taken the lock over: this one must stop writing to the run."""
        if self.lost:
            raise RunLockedError(f"lost the run lock {self.path} to {_describe(self._read() or {})}; stopped "
                                 f"so that two trainers never write to {self.path.parent}")

    def _create(self, owner: dict[str, Any]) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(owner) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _read(self) -> dict[str, Any] | None:
        """The holder's record; None when the file is gone."""
        try:
            return _parse(self.path.read_text())
        except FileNotFoundError:
            return None

    def _takeover_reason(self, holder: dict[str, Any]) -> str | None:
        """Why the holder is known to be gone, or None while it may be alive."""
        job_id = os.environ.get("SLURM_JOB_ID", "")
        if job_id and holder.get("slurm_job_id") == job_id:
            return f"it belongs to this Slurm job ({job_id}), requeued"
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
                and not is_process_alive(holder["pid"]):
            return f"process {holder['pid']} is no longer running on this host"
        age = time.time() - float(holder.get("heartbeat", 0))
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s"
        return None

    def _set_aside(self, holder: dict[str, Any]) -> bool:
        """Move a stale record out of the way; False when another trainer changed the lock meanwhile."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        if _parse(aside.read_text()) != holder:  # we moved a fresher lock: put it back if the name is still free
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink()
            return False
        aside.unlink()
        return True

    def _is_ours(self) -> bool:
        holder = self._read()
        return holder is not None and self.owner is not None and holder.get("token") == self.owner["token"]

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self._is_ours():
                self.lost = True
                log.error(f"lost the run lock {self.path}: another trainer took it over (now held by "
                          f"{_describe(self._read() or {})}); this trainer no longer owns the run directory")
                return
            assert self.owner is not None
            self.owner["heartbeat"] = time.time()
            atomic_write_json(self.path, self.owner)


def lock_run_directory(run_dir: str | Path, is_main_process: bool) -> RunLock | None:
    """Take the run's lock on the main process (returned; None on other ranks). When it is held by a live
    trainer, every rank raises the same RunLockedError, so the whole job stops before touching the run."""
    lock = RunLock(run_dir) if is_main_process else None
    refusal: list[str | None] = [None]
    if lock is not None:
        try:
            lock.acquire()
        except RunLockedError as error:
            refusal[0] = str(error)
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(refusal, src=0)
    if refusal[0] is not None:
        raise RunLockedError(refusal[0])
    return lock
