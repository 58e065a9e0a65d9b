"""What a config field allows, as its dataclass `metadata`: checked where a config is loaded (config_files.py)."""

from __future__ import annotations

from typing import Any


def choices(*allowed: Any) -> dict[str, Any]:
    """The field takes one of `allowed`."""
    return {"choices": allowed}


def at_least(minimum: float) -> dict[str, Any]:
    """The field takes a number of at least `minimum`."""
    return {"min": minimum}
