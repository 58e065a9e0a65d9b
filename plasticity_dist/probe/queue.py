"""The durable probe queue: `RUN/probes/pending/<tag>.json`, one request per checkpoint to probe.

A request is written before its probe is submitted and removed only once `RUN/probes/<tag>.json`
exists, so a crash at any point leaves the request behind to be resubmitted on resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plasticity_dist.common.fileio import atomic_write_json
from plasticity_dist.common.run_layout import RunLayout


class ProbeQueue:
    def __init__(self, run_dir: str | Path) -> None:
        self.layout = RunLayout(run_dir)
        self.pending_dir = self.layout.pending

    def _request_path(self, tag: str) -> Path:
        return self.layout.pending_request(tag)

    def has_result(self, tag: str) -> bool:
        return self.layout.probe_result(tag).is_file()

    def add(self, tag: str) -> None:
        """Record that checkpoint `tag` needs a probe (idempotent)."""
        if self.has_result(tag) or self._request_path(tag).exists():
            return
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._request_path(tag), {"checkpoint": tag, "attempts": 0, "failed": False, "submissions": []})

    def update(self, request: dict[str, Any]) -> None:
        atomic_write_json(self._request_path(request["checkpoint"]), request)

    def open_requests(self) -> list[dict[str, Any]]:
        """Requests still without a result, oldest checkpoint first; finished ones are removed here."""
        if not self.pending_dir.is_dir():
            return []
        requests = []
        for path in sorted(self.pending_dir.glob("*.json")):
            request = json.loads(path.read_text())
            if self.has_result(request["checkpoint"]):
                path.unlink()
            else:
                requests.append(request)
        return requests

    def protected_tags(self) -> set[str]:
        """Checkpoints that an unfinished probe still needs (retention must keep them)."""
        return {request["checkpoint"] for request in self.open_requests() if not request["failed"]}
