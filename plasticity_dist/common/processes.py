"""Facts about local processes and ports that several parts need (probe executors, the run lock, launches)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


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
