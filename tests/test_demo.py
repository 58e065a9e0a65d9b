"""The demo end to end with an even smaller budget: real preprocessing, trainer, local probes, report."""

from __future__ import annotations

import json
import re

import matplotlib.image

from plasticity_dist.cli import main

# a Python warning ("file.py:83: FutureWarning: ...") or a DeepSpeed logger warning ("[...] [WARNING] [...")
DEPENDENCY_WARNING = re.compile(r"\w+Warning: |\] \[WARNING\] \[")


def test_demo_runs_the_whole_pipeline_and_ends_in_a_report(tmp_path, capfd):
    assert main(["demo", "--out", str(tmp_path), "--cycles", "1", "--task-tokens", "2048"]) == 0
    demo_log = "\n".join(capfd.readouterr())  # the demo's own lines and its training processes'
    probe_logs = "".join(path.read_text() for path in tmp_path.rglob("*.log"))
    assert probe_logs
    assert [line for line in (demo_log + probe_logs).splitlines() if DEPENDENCY_WARNING.search(line)] == []
    report = tmp_path / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert [run["run"] for run in summary["runs"]] == ["100K", "100K-seed1", "600K", "100K-shrink-perturb"]
    assert [run["model"] for run in summary["runs"]] == ["100K", "100K", "600K", "100K"]
    assert [group["runs"] for group in summary["replicate_groups"]][0] == ["100K", "100K-seed1"]
    assert summary["mitigation_groups"] == [["100K", "100K-shrink-perturb"]]
    for run in summary["runs"]:
        assert run["problem"] == "continual"
        assert sorted(probe["cycle"] for probe in run["probes"]) == [0, 1]
    assert "AUC" in (report / "report.md").read_text()
    plots = sorted(report.glob("*.png"))
    assert plots
    for plot in plots:
        assert matplotlib.image.imread(plot).size > 0
