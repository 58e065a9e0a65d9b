"""Facts about local processes and ports that several parts need (probe executors, the run lock, launches),
and how a process ends."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import NoReturn

_skip_finalization = False


def is_process_alive(pid: int) -> bool:
    """True while process `pid` exists on this host and is not a zombie (killed, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def free_port() -> int:
    """A TCP port free on this host now, for a rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, as Slurm's task plugin (task/affinity, task/cgroup)
    or taskset set it. os.cpu_count() counts the machine's, bound or not."""
    return len(os.sched_getaffinity(0))


def skip_finalization_at_exit() -> None:
    """Have `exit_process` end this process without interpreter finalization: called once a process group is
    gone (engine.launch.end_distributed)."""
    global _skip_finalization
    _skip_finalization = True


def exit_process(status: int) -> NoReturn:
    """End this process with `status`. After a torch.distributed group, without interpreter finalization: DeepSpeed
    keeps the gloo groups referenced, so their worker threads outlive `destroy_process_group`, and one that drops
    a Python-owned tensor while the interpreter finalizes aborts the process (SIGABRT, 'terminate called without
    an active exception') after its work is done. Logging and the standard streams are flushed first."""
    if _skip_finalization:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
