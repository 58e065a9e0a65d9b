"""Forgetting beside plasticity: the trainer evaluates every language at every task end (and the probe language
zero-shot), and the report turns that into a loss matrix, backward transfer per cycle and a zero-shot curve."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from fabricated_runs import make_run
from plasticity_dist.analysis.forgetting import backward_transfer
from plasticity_dist.cli import main
from runs import step_records

# task index -> (en, zh, vi zero-shot) losses at that task end; tasks alternate en, zh over 3 cycles
LOSSES = [(2.0, 5.0, 6.0), (2.4, 3.0, 5.5), (1.9, 3.5, 5.2), (2.2, 2.8, 5.0), (1.8, 3.2, 4.9), (2.3, 2.7, 4.8)]


def language_losses(index: int) -> dict:
    en, zh, vi = LOSSES[index]
    return {"val_losses": {"en": en, "zh": zh}, "probe_val_loss": vi}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run = make_run(root, "100K", cycles=3, language_losses=language_losses)
    out = root / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    return out, (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())["runs"][0]


def test_backward_transfer_is_each_earlier_language_at_the_cycle_end_against_right_after_its_task(report):
    _, markdown, run = report
    forgetting = run["forgetting"]
    assert forgetting["languages"] == ["en", "zh"] and forgetting["probe_language"] == "vi"
    assert [row["probe_val_loss"] for row in forgetting["task_ends"]] == [vi for _, _, vi in LOSSES]
    # en is trained first in every cycle: its loss at the cycle end (after zh) minus right after its own task
    expected = [2.4 - 2.0, 2.2 - 1.9, 2.3 - 1.8]
    transfer = forgetting["backward_transfer"]
    assert [cycle["cycle"] for cycle in transfer] == [1, 2, 3]
    assert [cycle["mean_loss_change"] for cycle in transfer] == pytest.approx(expected)
    assert [cycle["loss_change"]["en"] for cycle in transfer] == pytest.approx(expected)
    assert "| continual-100K | 1 | +0.4000 | en +0.400 |" in markdown


def test_an_unfinished_cycle_has_no_backward_transfer():
    rows = [{"task": task, "cycle": cycle, "val_losses": {"en": 2.0, "zh": 3.0}}
            for cycle, task in ((1, "en"), (1, "zh"), (2, "en"))]
    assert [cycle["cycle"] for cycle in backward_transfer(rows, tasks_per_cycle=2)] == [1]


def test_the_report_draws_the_loss_matrix_and_the_zero_shot_probe_loss(report):
    out, markdown, _ = report
    for name in ("forgetting_continual-100K.png", "probe_zero_shot.png"):
        assert f"({name})" in markdown
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG"


def test_the_trainer_evaluates_every_language_and_the_probe_language_at_every_task_end(zero3_reference):
    """ZeRO-3 on 2 ranks: every rank evaluates the same batches, so the losses are the run's, not a rank's."""
    task_ends = [json.loads(line) for line in (zero3_reference / "metrics.jsonl").read_text().splitlines()
                 if json.loads(line)["event"] == "task_end"]
    assert [end["task"] for end in task_ends] == ["en", "zh"]
    for end in task_ends:
        assert set(end["val_losses"]) == {"en", "zh"}
        assert all(math.isfinite(loss) for loss in [*end["val_losses"].values(), end["probe_val_loss"]])
    after_en, after_zh = (end["val_losses"] for end in task_ends)
    assert after_zh["zh"] < after_en["zh"]  # training zh lowers the zh loss
    assert step_records(zero3_reference)[-1]["step"] == 64
