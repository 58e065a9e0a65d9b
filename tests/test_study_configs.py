"""The study's shipped configs can observe what they study: every continual run trains past the published law's
predicted onset with margin and probes every task where that onset comes before the second cycle end, each
stationary control differs from its size's continual run only in the data stream (and has a Slurm script), the
cheap sizes run several seeds, and a probe trains at its size's learning rate unless `probe.lr` says otherwise."""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path

import pytest

from plasticity_dist.analysis.runs import non_embedding_params  # exact, as `models` lists them; cached
from plasticity_dist.analysis.scaling import predict_onset
from plasticity_dist.report.plan import EARLY_ONSET_CYCLES, cycles_to_observe_onset, per_task_probe_cycles
from plasticity_dist.study.config_files import config_to_dict, config_to_yaml, load_config
from plasticity_dist.study.curriculum import build_tasks
from plasticity_dist.train.probe_run import probe_config_hash

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
STUDY_SIZES = ("5M", "12M", "27M", "53M", "106M", "314M", "1B")
STATIONARY_SIZES = ("5M", "12M", "27M")
# The toy run for tests and CPUs: 131K-token tasks, not the 5e9-token tasks the law counts.
NOT_STUDY_SCALE = {"continual-tiny.yaml"}
CONTINUAL_CONFIGS = sorted(path.name for path in CONFIGS.glob("continual*.yaml") if path.name not in NOT_STUDY_SCALE)


def test_every_study_size_ships_a_continual_config():
    assert {f"continual-{size}.yaml" for size in STUDY_SIZES} <= set(CONTINUAL_CONFIGS)


@pytest.mark.parametrize("config_name", CONTINUAL_CONFIGS)
def test_continual_run_trains_past_the_laws_predicted_onset_with_margin(config_name):
    config = load_config(CONFIGS / config_name)
    tasks = build_tasks(config)
    tasks_per_cycle = len(config.curriculum.tasks)
    probes = sum(task.probe_after for task in tasks)
    predicted_onset_tasks = predict_onset(non_embedding_params(config.model.preset))
    needed_cycles = cycles_to_observe_onset(predicted_onset_tasks, tasks_per_cycle)
    assert probes == config.curriculum.cycles + (tasks_per_cycle - 1) * config.probe.every_task_cycles
    assert config.curriculum.cycles >= needed_cycles, (
        f"{config_name}: the law predicts the onset after {predicted_onset_tasks:.1f} tasks; observing it needs "
        f"{needed_cycles} cycles, the config trains {config.curriculum.cycles}")


@pytest.mark.parametrize("config_name", CONTINUAL_CONFIGS)
def test_an_onset_predicted_before_the_second_cycle_end_is_probed_after_every_task(config_name):
    config = load_config(CONFIGS / config_name)
    tasks_per_cycle = len(config.curriculum.tasks)
    predicted_onset_tasks = predict_onset(non_embedding_params(config.model.preset))
    needed = per_task_probe_cycles(predicted_onset_tasks, tasks_per_cycle)
    assert config.probe.every_task_cycles >= needed, (
        f"{config_name}: the law predicts the onset after {predicted_onset_tasks:.1f} tasks; placing it needs "
        f"probes after every task of {needed} cycles, the config probes {config.probe.every_task_cycles}")
    if predicted_onset_tasks < EARLY_ONSET_CYCLES * tasks_per_cycle:
        probed = [task.index + 1 for task in build_tasks(config) if task.probe_after]
        assert set(range(1, math.ceil(1.5 * predicted_onset_tasks) + 1)) <= set(probed)


@pytest.mark.parametrize("size", STUDY_SIZES)
def test_every_size_up_to_53m_runs_several_seeds(size):
    replicates = load_config(CONFIGS / f"continual-{size}.yaml").replicates
    assert replicates >= 2 if non_embedding_params(size) <= non_embedding_params("53M") else replicates == 1


def test_the_1b_run_trains_the_70_cycles_its_comment_derives():
    assert load_config(CONFIGS / "continual-1B.yaml").curriculum.cycles == 70


def cycle_tokens(tasks) -> list[int]:
    """Tokens trained between consecutive probe requests."""
    spans, tokens = [], 0
    for task in tasks:
        tokens += task.tokens
        if task.probe_after:
            spans.append(tokens)
            tokens = 0
    return spans


@pytest.mark.parametrize("size", STATIONARY_SIZES)
def test_stationary_config_is_its_sizes_continual_config_but_for_the_data_stream(size):
    continual = load_config(CONFIGS / f"continual-{size}.yaml")
    stationary = load_config(CONFIGS / f"stationary-{size}.yaml")
    continual_dict, stationary_dict = config_to_dict(continual), config_to_dict(stationary)
    for differing_key in ("curriculum", "run_dir"):
        continual_dict.pop(differing_key), stationary_dict.pop(differing_key)
    continual_dict["probe"].pop("every_task_cycles")  # a stationary run probes every interval
    assert stationary_dict["probe"].pop("every_task_cycles") == 0
    assert stationary_dict == continual_dict
    assert stationary.curriculum.problem == "stationary" and stationary.run_dir == f"runs/stationary-{size}"
    assert stationary.curriculum.tasks == continual.curriculum.tasks  # the same languages, mixed

    cycle_ends_only = load_config(CONFIGS / f"continual-{size}.yaml", ["probe.every_task_cycles=0"])
    continual_spans = cycle_tokens(build_tasks(cycle_ends_only))
    stationary_spans = cycle_tokens(build_tasks(stationary))
    assert sum(stationary_spans) == sum(continual_spans)  # total tokens
    assert stationary_spans == continual_spans  # a probe every continual cycle's worth of tokens


def sbatch_options(script: Path) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", script.read_text(), flags=re.MULTILINE))


def run_with_stub_srun(script: Path, tmp_path: Path, **extra_env: str) -> str:
    """Run a job script outside Slurm with `srun` and `scontrol` replaced by stubs; returns what srun got."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "srun").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path}/srun.args\n')
    (stubs / "scontrol").write_text("#!/bin/bash\necho node1\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("CONFIG", "RUN_DIR", "PROBLEM", "SEED")}
    env.update(extra_env)
    env.update(PATH=f"{stubs}:{env['PATH']}", PLASTICITY_REPO=str(REPO), PLASTICITY_VENV=str(tmp_path / "venv"),
               SLURM_JOB_NODELIST="node1", SLURM_JOB_ID="4242")
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True, text=True, timeout=60)
    return (tmp_path / "srun.args").read_text()


@pytest.mark.parametrize("size", STATIONARY_SIZES)
def test_stationary_slurm_script_trains_the_stationary_config_with_its_sizes_resources(size, tmp_path):
    script = REPO / "slurm" / f"train_stationary_{size}.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    config_path = f"configs/stationary-{size}.yaml"
    assert (REPO / config_path).is_file()

    launched = run_with_stub_srun(script, tmp_path)
    assert f"train --config {config_path} run_dir=runs/stationary-{size}" in launched

    options = sbatch_options(script)
    continual_options = sbatch_options(REPO / "slurm" / f"train_{size}.sh")
    assert options.pop("job-name") == f"plasticity-stationary-{size}"
    continual_options.pop("job-name")
    assert options == continual_options


def test_continual_slurm_script_still_trains_the_continual_config(tmp_path):
    launched = run_with_stub_srun(REPO / "slurm" / "train_5M.sh", tmp_path)
    assert "train --config configs/continual-5M.yaml run_dir=runs/continual-5M" in launched
    assert "seed=" not in launched


def test_slurm_script_trains_another_seed_in_its_own_run_directory(tmp_path):
    launched = run_with_stub_srun(REPO / "slurm" / "train_5M.sh", tmp_path, SEED="2")
    assert "train --config configs/continual-5M.yaml run_dir=runs/continual-5M-seed2 seed=2 data.seed=2" in launched


@pytest.mark.parametrize("size", STUDY_SIZES)
def test_probe_trains_at_its_sizes_training_lr_by_default(size):
    config = load_config(CONFIGS / f"continual-{size}.yaml")
    assert config.probe.lr == config.optimizer.lr


def test_probe_lr_follows_the_runs_lr_and_an_explicit_probe_lr_wins(tmp_path):
    assert load_config(CONFIGS / "continual-5M.yaml").probe.lr == 1e-3
    assert load_config(CONFIGS / "continual-1B.yaml").probe.lr == 2e-4
    assert load_config(CONFIGS / "continual-5M.yaml", ["optimizer.lr=3e-4"]).probe.lr == 3e-4
    assert load_config(CONFIGS / "continual-5M.yaml", ["probe.lr=6e-4"]).probe.lr == 6e-4
    in_file = tmp_path / "probe-lr.yaml"
    in_file.write_text("inherit: " + str(CONFIGS / "continual-5M.yaml") + "\nprobe: {lr: 6.0e-4}\n")
    config = load_config(in_file)
    assert (config.optimizer.lr, config.probe.lr) == (1e-3, 6e-4)


def test_resolved_config_states_the_probe_lr_it_uses(tmp_path):
    config = load_config(CONFIGS / "continual-12M.yaml")
    assert config_to_dict(config)["probe"]["lr"] == 1e-3
    written = tmp_path / "config.yaml"
    written.write_text(config_to_yaml(config))
    assert load_config(written, ["optimizer.lr=5e-4"]).probe.lr == 1e-3  # a run's probes keep their LR


def test_probe_config_hash_reflects_the_lr_the_probe_uses():
    default = load_config(CONFIGS / "continual-5M.yaml")
    same_lr_set_explicitly = load_config(CONFIGS / "continual-5M.yaml", ["probe.lr=1e-3"])
    other_lr = load_config(CONFIGS / "continual-5M.yaml", ["probe.lr=6e-4"])
    assert probe_config_hash(default) == probe_config_hash(same_lr_set_explicitly)
    assert probe_config_hash(default) != probe_config_hash(other_lr)
