"""The trainer's side of probing: queue a request per checkpoint, keep at most J probes running,
retry the ones that died (up to `probe.retries`), and never block training (except `inline`). After the
trainer has finished, `resubmit` gives every open or failed request a fresh set of retries.
"""

from __future__ import annotations

import time
from pathlib import Path

from plasticity_dist.common.logging import get_logger
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.probe.executors import LocalExecutor, make_executor
from plasticity_dist.probe.queue import ProbeQueue
from plasticity_dist.study.config import ProbeSection

log = get_logger()


class ProbeScheduler:
    def __init__(self, run_dir: str | Path, probe: ProbeSection) -> None:
        self.layout = RunLayout(run_dir)
        self.probe = probe
        self.queue = ProbeQueue(run_dir)
        self.executor = make_executor(probe)

    def protects(self, checkpoint_tag: str) -> bool:
        """Whether a probe still needs checkpoint `checkpoint_tag` (queued or running): retention must keep it."""
        return checkpoint_tag in self.queue.protected_tags()

    def request(self, checkpoint_tag: str) -> None:
        """Queue a probe of `checkpoint_tag` and start what the concurrency limit allows."""
        self.queue.add(checkpoint_tag)
        self.poll()

    def poll(self) -> None:
        """Start queued probes, retry dead ones, mark those out of retries as failed."""
        requests = [request for request in self.queue.open_requests() if not request["failed"]]
        running = [request for request in requests if self._is_running(request)]
        limit = self.executor.max_running
        for request in requests:
            if request in running or (limit is not None and len(running) >= limit):
                continue
            if request["attempts"] - request.get("retries_from", 0) > self.probe.retries:
                request["failed"] = True
                self.queue.update(request)
                log.warning(f"probe of {request['checkpoint']} failed {request['attempts']} times; "
                            f"see {request['submissions'][-1]['log']}")
                continue
            if self._submit(request):
                running.append(request)

    def resubmit(self) -> None:
        """Give every open request that is not running, failed ones included, `probe.retries` more attempts
        and start what the concurrency limit allows."""
        for request in self.queue.open_requests():
            if not self._is_running(request):
                request["failed"] = False
                request["retries_from"] = request["attempts"]
                self.queue.update(request)
        self.poll()

    def describe(self) -> list[str]:
        """One line per open request: checkpoint, state (running, waiting or failed), attempts, last log."""
        lines = []
        for request in self.queue.open_requests():
            state = "failed" if request["failed"] else "running" if self._is_running(request) else "waiting"
            last = request["submissions"][-1] if request["submissions"] else {}
            lines.append(f"{request['checkpoint']}\t{state}\tattempts {request['attempts']}\t{last.get('log', '-')}")
        return lines

    def _is_running(self, request: dict) -> bool:
        last = request["submissions"][-1] if request["submissions"] else None
        return last is not None and "error" not in last and self.executor.is_running(last)

    def _submit(self, request: dict) -> bool:
        """Submit one attempt; True when it is running now. A failed submission is a failed attempt:
        it is logged and retried, never raised into the training loop."""
        tag = request["checkpoint"]
        log_path = self.layout.probe_log(tag, request["attempts"] + 1)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        request["attempts"] += 1
        self.queue.update(request)  # counted before it starts: a crash here still uses up the attempt
        try:
            handle = self.executor.submit(self.layout.checkpoint(tag), self.layout.config, log_path)
        except (OSError, RuntimeError) as error:
            log_path.write_text(f"submission failed: {error}\n")
            handle = {"log": str(log_path), "error": str(error)}
            log.warning(f"probe of {tag} could not be submitted: {error}")
        request["submissions"].append(handle)
        self.queue.update(request)
        if "error" in handle:
            return False
        log.info(f"probe of {tag} submitted ({self.probe.executor}: {handle})")
        return self.executor.is_running(handle)

    def drain(self) -> None:
        """At the end of a run: with local probes, keep starting and waiting until none is left to run.

        Slurm probes outlive the trainer by design, so nothing waits for them.
        """
        if not isinstance(self.executor, LocalExecutor):
            self.poll()
            return
        while any(not request["failed"] for request in self.queue.open_requests()):
            self.poll()
            time.sleep(1.0)
