"""Facts about local processes that several parts need (probe executors, the run lock)."""

from __future__ import annotations

from pathlib import Path


def is_process_alive(pid: int) -> bool:
    """True while process `pid` exists on this host and is not a zombie (killed, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
