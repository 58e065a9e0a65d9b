import json
import subprocess
import sys

import pytest

from plasticity_dist.cli import main
from plasticity_dist.demo import DEMO_CONFIG
from plasticity_dist.model.presets import PRESETS


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plasticity_dist.cli", *args], capture_output=True, text=True)


def test_models_json_lists_every_preset_with_exact_counts(capsys):
    assert main(["models", "--json", "--vocab-size", "1000"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == [preset.name for preset in PRESETS]
    for row in rows:
        assert {"name", "n_layer", "d_model", "n_head", "non_embedding_params", "total_params"} <= set(row)
        assert abs(row["error_vs_name_pct"]) <= 3
        # token embedding rows: the vocabulary padded to a multiple of 64; position embedding: the context
        assert row["total_params"] - row["non_embedding_params"] == (1024 + 2048) * row["d_model"]


def test_console_script_help_and_bad_subcommand():
    help_run = run_cli("--help")
    assert help_run.returncode == 0 and "models" in help_run.stdout
    bad = run_cli("nope")
    assert bad.returncode != 0 and "invalid choice" in bad.stderr


def test_every_subcommand_has_working_help(capsys):
    import pytest

    from plasticity_dist.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"models", "preprocess", "verify", "train", "probe", "report", "predict", "demo"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0, command
        assert "usage: plasticity-dist" in capsys.readouterr().out


def test_bad_train_override_fails_with_one_line_and_nothing_else():
    failed = run_cli("train", "--config", str(DEMO_CONFIG), "optimizer.lrr=1")
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert failed.stderr.splitlines() == [
        "plasticity-dist train: error: unknown config key optimizer.lrr; did you mean optimizer.lr? allowed: lr, "
        "betas, eps, fused, weight_decay, grad_clip, schedule, warmup_steps, min_lr_ratio"
    ]


def test_train_error_after_deepspeed_loads_is_the_only_line(tmp_path):
    missing = tmp_path / "missing"
    failed = run_cli("train", "--config", str(DEMO_CONFIG), f"run_dir={tmp_path / 'run'}", f"data.root={missing}")
    assert failed.returncode == 2
    assert failed.stdout == ""  # DeepSpeed logs to stdout
    [error] = failed.stderr.splitlines()  # no dependency chatter, and the config is logged only once a run starts
    assert error.startswith(f"plasticity-dist train: error: {missing / 'en' / 'manifest.json'}")


QUIETED_PROCESS = """
import warnings

import torch
import torch.distributed as dist

from plasticity_dist.common.logging import quiet_dependencies

quiet_dependencies()
import deepspeed  # detects the accelerator at import

dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
dist.all_gather_into_tensor(torch.zeros(1), torch.zeros(1))  # what DeepSpeed's ZeRO calls; deprecated in torch
deepspeed.utils.logger.warning("a DeepSpeed warning")
warnings.warn("a warning of ours", FutureWarning)
"""


def test_quieted_process_drops_dependency_chatter_but_not_real_warnings():
    quieted = subprocess.run([sys.executable, "-c", QUIETED_PROCESS], capture_output=True, text=True, check=True)
    assert "Setting accelerator" not in quieted.stdout
    assert "deprecated" not in quieted.stderr
    assert "a DeepSpeed warning" in quieted.stdout
    assert "FutureWarning: a warning of ours" in quieted.stderr


ENDING_PROCESS = """
import atexit
import sys

import torch.distributed as dist

from plasticity_dist.common.processes import exit_process
from plasticity_dist.engine.launch import end_distributed

if sys.argv[1] == "group":
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
atexit.register(print, "finalized")  # atexit handlers run as the interpreter finalizes
print("work done", end="")  # buffered: a pipe is not a terminal
end_distributed()
exit_process(3)
"""


@pytest.mark.parametrize("group", [True, False])
def test_a_process_that_ran_a_group_exits_with_its_status_without_finalizing(group):
    ended = subprocess.run([sys.executable, "-c", ENDING_PROCESS, "group" if group else "none"],
                           capture_output=True, text=True, timeout=120)
    assert ended.returncode == 3
    assert ended.stdout == ("work done" if group else "work donefinalized\n")
