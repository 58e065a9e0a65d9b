import json
import logging
from pathlib import Path

import pytest

from plasticity_dist.common.logging import get_logger
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.study.config import EarlyWarningSection
from plasticity_dist.study.config_files import load_config
from plasticity_dist.study.curriculum import Task
from plasticity_dist.train.callbacks.base import LoopPosition, RunContext
from plasticity_dist.train.callbacks.early_warning import StagnationMonitor
from plasticity_dist.train.metrics import MetricsLog, read_metrics

TASK_NAMES = ("en", "zh")  # two tasks per cycle: task index = 2 * (cycle - 1) + position
COMPARISONS = 9  # the run's planned % changes: 10 cycles, each probed, against the first
RISING = [2.0, 2.04, 2.081, 2.12, 2.16, 2.2]  # 2 % a cycle, wiggling by 0.05 %: far outside the noise


def task(index: int) -> Task:
    return Task(index=index, cycle=index // 2 + 1, name=TASK_NAMES[index % 2], datasets=(), weights=None,
                tokens=1000, probe_after=index % 2 == 1, val_datasets=())


def improving_losses(improvement: float) -> list[float]:
    """Ten logged losses whose first and last five average 4.0 and 4.0 * (1 - improvement)."""
    return [4.0] * 5 + [4.0 * (1 - improvement)] * 5


def log_task(run_dir: Path, index: int, losses: list[float]) -> None:
    logged = task(index)
    with open(run_dir / "metrics.jsonl", "a") as handle:
        for i, loss in enumerate(losses):
            handle.write(json.dumps({"event": "step", "task": logged.name, "task_index": index, "cycle": logged.cycle,
                                     "step": 100 * index + 10 * (i + 1), "tokens": 0, "loss": loss}) + "\n")


def write_probe(run_dir: Path, cycle: int, auc: float, tasks_trained: int | None = None) -> None:
    """A probe result after `tasks_trained` tasks (default: the end of `cycle`)."""
    tasks_trained = 2 * cycle if tasks_trained is None else tasks_trained
    (run_dir / "probes").mkdir(exist_ok=True)
    (run_dir / "probes" / f"probe-task{tasks_trained}.json").write_text(json.dumps({
        "checkpoint": f"probe-task{tasks_trained}", "cycle": cycle, "tasks_trained": tasks_trained,
        "tokens": 1000 * tasks_trained, "eval_tokens": [0, 10], "val_losses": [auc, auc], "auc": auc,
        "config_hash": "abc",
    }))


def monitor(run_dir: Path, is_main: bool = True, **section: object) -> StagnationMonitor:
    return StagnationMonitor(EarlyWarningSection(**section), run_dir, MetricsLog(run_dir / "metrics.jsonl", True),
                             is_main=is_main, reference_tasks=len(TASK_NAMES), comparisons=COMPARISONS)


def run_context(run_dir: Path, *overrides: str) -> RunContext:
    """What the trainer hands its callbacks, with only what the early warning reads."""
    return RunContext(config=load_config(None, overrides), step_runner=None, validator=None, plan=None, tasks=[],
                      metrics=MetricsLog(run_dir / "metrics.jsonl", True), layout=RunLayout(run_dir), is_main=True,
                      initial_weights={}, checkpointer=None, probe_scheduler=None,
                      checkpoint_contents=lambda: ({}, {}))


def end_task(stagnation_monitor: StagnationMonitor, index: int) -> None:
    stagnation_monitor.on_task_end(LoopPosition(task=task(index), step=100 * index + 100, step_in_task=100,
                                                task_steps=100, tokens=5000 * index + 4950, lr=1e-3))


def warnings(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [record for record in read_metrics(path) if record["event"] == "warning"] if path.is_file() else []


@pytest.fixture
def package_log(caplog):
    logger = get_logger()
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_task_learning_much_less_than_in_its_first_cycle_warns_with_its_figures(tmp_path, package_log):
    log_task(tmp_path, 1, improving_losses(0.5))
    log_task(tmp_path, 3, improving_losses(0.1))
    end_task(monitor(tmp_path), 3)
    [warning] = warnings(tmp_path)
    assert {key: warning[key] for key in ("kind", "step", "tokens", "task", "task_index", "cycle")} == {
        "kind": "loss_improvement", "step": 400, "tokens": 19950, "task": "zh", "task_index": 3, "cycle": 2}
    assert warning["value"] == pytest.approx(0.1)
    assert warning["reference"] == pytest.approx(0.5)
    assert warning["threshold"] == pytest.approx(0.25)
    assert warning["message"] == ("task zh (cycle 2): loss improved 10.0% vs 50.0% in cycle 1 (threshold 0.5x): "
                                  "learning is slowing")
    [line] = [record for record in package_log.records if record.levelno == logging.WARNING]
    assert warning["message"] in line.getMessage()


def test_task_learning_about_as_well_as_in_its_first_cycle_does_not_warn(tmp_path):
    log_task(tmp_path, 1, improving_losses(0.5))
    log_task(tmp_path, 3, improving_losses(0.4))
    end_task(monitor(tmp_path), 3)
    assert warnings(tmp_path) == []


def test_first_task_of_the_run_is_never_a_reference(tmp_path):
    log_task(tmp_path, 0, improving_losses(0.9))  # en, cycle 1: trained from random weights
    log_task(tmp_path, 2, improving_losses(0.1))  # en, cycle 2
    end_task(monitor(tmp_path), 2)
    assert warnings(tmp_path) == []

    log_task(tmp_path, 4, improving_losses(0.02))  # en, cycle 3: against cycle 2, not cycle 1
    end_task(monitor(tmp_path), 4)
    [warning] = warnings(tmp_path)
    assert (warning["task_index"], warning["reference"]) == (4, pytest.approx(0.1))
    assert "in cycle 2" in warning["message"]


def test_task_in_its_first_cycle_has_no_reference_and_does_not_warn(tmp_path):
    log_task(tmp_path, 1, improving_losses(0.0))
    end_task(monitor(tmp_path), 1)
    assert warnings(tmp_path) == []


def test_probe_auc_above_threshold_and_outside_the_noise_warns_once_even_after_resume(tmp_path):
    write_probe(tmp_path, 0, 5.0)  # the untrained baseline: far above, but no sign of stagnation
    for cycle, auc in enumerate(RISING[:3], start=1):  # the reference, then +2 % and +4 %: below the threshold
        write_probe(tmp_path, cycle, auc)
    first = monitor(tmp_path)
    end_task(first, 5)
    assert warnings(tmp_path) == []

    write_probe(tmp_path, 4, RISING[3])  # +6 %
    end_task(first, 7)
    end_task(first, 8)
    [warning] = warnings(tmp_path)
    assert (warning["kind"], warning["probe_cycle"], warning["task_index"]) == ("probe_auc", 4, 7)
    assert (warning["value"], warning["reference"]) == (pytest.approx(2.12), pytest.approx(2.0))
    assert warning["threshold"] == pytest.approx(2.1)
    assert "+6.0%" in warning["message"] and "after task 8, cycle 4" in warning["message"]
    assert "outside the noise" in warning["message"]

    resumed = monitor(tmp_path)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    end_task(resumed, 9)
    assert len(warnings(tmp_path)) == 1


def test_a_change_within_the_probe_noise_never_warns(tmp_path):
    """+6 % at cycle 3 is past the threshold, but the probes scatter by about 5 %: the report would mark that
    change within noise, so the early warning does not call it a decline."""
    for cycle, auc in enumerate([2.0, 2.12, 1.92, 2.14, 1.9], start=1):
        write_probe(tmp_path, cycle, auc)
    end_task(monitor(tmp_path), 9)
    assert warnings(tmp_path) == []
    (tmp_path / "few").mkdir()
    for cycle in range(1, 3):  # too few probes for a noise estimate: nothing is judged
        write_probe(tmp_path / "few", cycle, [2.0, 2.5][cycle - 1])
    end_task(monitor(tmp_path / "few"), 3)
    assert warnings(tmp_path / "few") == []


def test_only_the_main_process_and_an_enabled_monitor_warn(tmp_path):
    log_task(tmp_path, 1, improving_losses(0.5))
    log_task(tmp_path, 3, improving_losses(0.0))
    for cycle, auc in enumerate(RISING[:4], start=1):
        write_probe(tmp_path, cycle, auc)
    end_task(monitor(tmp_path, is_main=False), 3)
    assert warnings(tmp_path) == []
    assert StagnationMonitor.from_context(run_context(tmp_path, "early_warning.enabled=false")) is None
    assert isinstance(StagnationMonitor.from_context(run_context(tmp_path)), StagnationMonitor)
    end_task(monitor(tmp_path), 3)
    assert [warning["kind"] for warning in warnings(tmp_path)] == ["loss_improvement", "probe_auc"]


def test_probes_judge_against_the_cycle_1_end_and_the_ones_before_it_never_warn(tmp_path):
    write_probe(tmp_path, 1, 3.0, tasks_trained=1)  # after the first task: trained less, far above
    end_task(monitor(tmp_path), 1)
    assert warnings(tmp_path) == []  # no reference yet: nothing is judged

    write_probe(tmp_path, 1, 1.95, tasks_trained=1)  # now on the line the later probes follow
    write_probe(tmp_path, 1, 2.0)  # the end of cycle 1: the reference
    write_probe(tmp_path, 2, 2.05, tasks_trained=3)  # mid-cycle 2
    write_probe(tmp_path, 2, 2.1)
    write_probe(tmp_path, 3, 2.15, tasks_trained=5)  # mid-cycle 3, +7.5 %, on a steady rise
    end_task(monitor(tmp_path), 5)
    [warning] = warnings(tmp_path)
    assert (warning["probe_cycle"], warning["probe_tasks_trained"], warning["reference"]) == (3, 5, pytest.approx(2.0))


def test_a_diverged_probe_warns_once_with_no_auc(tmp_path, package_log):
    write_probe(tmp_path, 1, 2.0)  # the reference
    write_probe(tmp_path, 2, 2.0)
    [diverged] = [path for path in (tmp_path / "probes").glob("*.json") if json.loads(path.read_text())["cycle"] == 2]
    diverged.write_text(json.dumps({**json.loads(diverged.read_text()), "auc": None, "val_losses": [2.0, None],
                                    "diverged": True}))
    stagnation_monitor = monitor(tmp_path)
    end_task(stagnation_monitor, 3)
    end_task(stagnation_monitor, 4)
    [warning] = warnings(tmp_path)
    assert (warning["kind"], warning["probe_cycle"], warning["value"]) == ("probe_diverged", 2, None)
    assert (warning["reference"], warning["threshold"]) == (pytest.approx(2.0), pytest.approx(2.1))
    assert f"({diverged.stem}) diverged" in warning["message"] and "diverged" in package_log.text
