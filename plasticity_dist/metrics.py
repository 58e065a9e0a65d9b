"""`RUN/metrics.jsonl`: one JSON object per logged step or event, appended by the main process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plasticity_dist.fileio import atomic_write_text


class MetricsLog:
    def __init__(self, path: str | Path, enabled: bool) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past `step`: a resumed run redoes those steps and logs them again."""
        if self.enabled and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
