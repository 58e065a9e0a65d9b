import json
import subprocess
import sys

from plasticity_dist.cli import main
from plasticity_dist.presets import PRESETS


def test_models_json_lists_every_preset_with_exact_counts(capsys):
    assert main(["models", "--json", "--vocab-size", "1000"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == [preset.name for preset in PRESETS]
    for row in rows:
        assert {"name", "n_layer", "d_model", "n_head", "non_embedding_params", "total_params"} <= set(row)
        assert abs(row["error_vs_name_pct"]) <= 3
        assert row["total_params"] - row["non_embedding_params"] == (1000 + 2048) * row["d_model"]


def test_console_script_help_and_bad_subcommand():
    help_text = subprocess.run(
        [sys.executable, "-m", "plasticity_dist.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "models" in help_text
    bad = subprocess.run([sys.executable, "-m", "plasticity_dist.cli", "nope"], capture_output=True, text=True)
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
