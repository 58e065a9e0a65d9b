"""`plasticity-dist plan`: a config's tokens, probes, onset, compute and disk, checked against hand
computations from the preset shapes (5M on H100s, 1B on A100s), the manifests of real datasets, and the
files of a real checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from plasticity_dist.cli import main as cli_main
from plasticity_dist.report.plan import checkpoint_bytes, plan_study
from plasticity_dist.study.config_files import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STUDY_VOCAB = 32768  # configs/corpora.yaml's tokenizer, already a multiple of 64
PUBLISHED_A, PUBLISHED_B = 1.3e-5, 0.8269  # onset tasks = a * P^b


def hand_plan(n_layer: int, d_model: int, global_batch: int, cycles: int, per_task_cycles: int, replicates: int,
              peak: float, mfu: float) -> dict[str, float]:
    """What the plan of a study config (8 languages of 5e9 tokens per cycle, 2048 context, one 5e9-token probe
    per cycle, per task in the first `per_task_cycles`, and one of the initial weights, keep_last 2, bf16, run
    `replicates` times) must say, worked out from the shape alone."""
    block = 12 * d_model**2 + 2 * d_model  # qkv, proj, MLP up and down; two LayerNorm weights
    non_embedding = n_layer * block + d_model  # and the final LayerNorm
    total = non_embedding + (STUDY_VOCAB + 2048) * d_model  # tied token embedding, position embedding
    flops_per_token = 6 * non_embedding + 12 * n_layer * d_model * 2048 + 6 * STUDY_VOCAB * d_model
    steps = 8 * cycles * (5_000_000_000 // (global_batch * 2048))
    train_tokens = steps * global_batch * 2048
    probes = cycles + 1 + 7 * per_task_cycles  # 7 more in a cycle probed after each of its 8 tasks
    probe_tokens = probes * 5e9
    full = total * (2 + 4 + 4 + 4)  # bf16 weights, fp32 master copy, Adam's two moments
    kept = probes + 2 - 1  # every probed checkpoint and the one before the last
    return {
        "non_embedding_params": non_embedding, "total_params": total, "flops_per_token": flops_per_token,
        "steps": steps, "train_tokens": train_tokens, "probe_tokens": probe_tokens,
        "probe_compute_share": probe_tokens / (train_tokens + probe_tokens),
        "train_gpu_hours": train_tokens * flops_per_token / (peak * mfu) / 3600,
        "probe_gpu_hours": probe_tokens * flops_per_token / (peak * mfu) / 3600,
        "gpu_hours_all_seeds": replicates * (train_tokens + probe_tokens) * flops_per_token / (peak * mfu) / 3600,
        "probes": probes, "per_task_probe_cycles": per_task_cycles, "replicates": replicates,
        "onset_tasks": PUBLISHED_A * non_embedding**PUBLISHED_B,
        "dataset_bytes": 9 * (5e9 + 2e6) * 2,  # 8 languages and vi, uint16, each with a 2e6-token val split
        "checkpoint_bytes": full, "kept_checkpoints": kept, "kept_bytes": kept * full,
        "kept_bytes_slimmed": 2 * full + (kept - 2) * total * 4,
    }


@pytest.mark.parametrize(("size", "shape", "gpu", "peak", "mfu", "gpus"), [
    ("5M", (5, 288, 128, 30, 2, 3), "h100", 989e12, 0.2, 8),  # probes after every task of cycles 1-2; 3 seeds
    ("1B", (28, 1728, 512, 70, 0, 1), "a100", 312e12, 0.4, 64),
])
def test_plan_of_a_study_config_matches_the_hand_computation(size, shape, gpu, peak, mfu, gpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data/study does not exist here: dataset sizes come from tokens and dtype
    plan = plan_study(load_config(CONFIGS / f"continual-{size}.yaml"), gpus=gpus, gpu=gpu, mfu=mfu).to_json()
    expected = hand_plan(*shape, peak=peak, mfu=mfu)
    for key, value in expected.items():
        assert plan[key] == pytest.approx(value, rel=1e-12), key
    assert plan["tasks"] == 8 * shape[3]
    assert plan["train_wall_days"] == pytest.approx(expected["train_gpu_hours"] / gpus / 24)
    onset_cycles = expected["onset_tasks"] / 8
    assert plan["onset_cycles"] == pytest.approx(onset_cycles)
    assert plan["cycles_to_observe_onset"] == max(math.ceil(1.5 * onset_cycles) + 2, 4)
    # an onset predicted under 2 cycles needs probes after every task up to 1.5x it, and of 2 cycles at least
    assert plan["per_task_probe_cycles_needed"] == (max(math.ceil(1.5 * onset_cycles), 2) if onset_cycles < 2 else 0)
    assert plan["observes_onset"] is True and plan["dataset_bytes_from_manifests"] is False


def test_plan_says_when_a_config_stops_before_the_onset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = plan_study(load_config(CONFIGS / "continual-1B.yaml", ["curriculum.cycles=30"]))
    assert plan.cycles_to_observe_onset == 70 and plan.observes_onset is False


def test_dataset_sizes_and_vocabulary_come_from_the_manifests_when_they_exist(data_root, tmp_path):
    config = load_config(CONFIGS / "continual-tiny.yaml", [f"data.root={data_root}", "probe.dataset=vi"])
    plan = plan_study(config)
    manifests = [json.loads(path.read_text()) for lang in ("en", "zh", "vi")
                 for path in (data_root / lang / "manifest.json", data_root / lang / "val" / "manifest.json")]
    assert plan.dataset_bytes_from_manifests
    assert plan.dataset_bytes == sum(manifest["totals"]["bytes"] for manifest in manifests)
    assert plan.vocab_size == 257  # the byte tokenizer's, not the study tokenizer's


def test_one_full_checkpoint_is_the_size_the_plan_gives(zero1_one_rank):
    """The 100K run on CPU saves fp32 model states: 4 bytes per parameter, plus 12 of optimizer state (measured
    on the demo's 100K checkpoint: 4.05 + 12.09 bytes per parameter; on a GPU, bf16 weights make it 14)."""
    plan = plan_study(load_config(zero1_one_rank / "config.yaml"))
    checkpoint = sorted((zero1_one_rank / "checkpoints").iterdir())[-1]
    saved = sum(path.stat().st_size for path in (checkpoint / "pytorch_model").rglob("*.pt"))
    assert saved == pytest.approx(checkpoint_bytes(plan.total_params, "fp32"), rel=0.03)


def test_plan_cli_prints_json_a_table_and_markdown_and_refuses_an_unknown_gpu(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    configs = [str(CONFIGS / "continual-5M.yaml"), str(CONFIGS / "continual-12M.yaml")]
    assert cli_main(["plan", "--config", *configs, "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)
    assert [plan["model"] for plan in plans] == ["5M", "12M"] and plans[0]["mfu"] == 0.2
    assert cli_main(["plan", "--config", *configs, "--markdown", "--mfu", "0.35"]) == 0
    markdown = capsys.readouterr().out
    assert "| | 5M | 12M |" in markdown and "H100, 35 %" in markdown
    assert "| probes after every task (continual) | cycles 1-2 (needs 2) | cycles 1-2 (needs 2) |" in markdown
    assert cli_main(["plan", "--config", configs[0]]) == 0
    assert "Study plan" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["plan", "--config", configs[0], "--gpu", "v100"])
    assert "invalid choice" in capsys.readouterr().err


def test_kept_checkpoints_follow_the_slim_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config_path = CONFIGS / "continual-5M.yaml"
    fp32, bf16, off = (plan_study(load_config(config_path, overrides)) for overrides in
                       ([], ["checkpoint.slim_dtype=bf16"], ["checkpoint.slim_after_probe=false"]))
    assert bf16.slim_checkpoint_bytes * 2 == fp32.slim_checkpoint_bytes == fp32.total_params * 4
    assert bf16.kept_bytes_slimmed == 2 * bf16.checkpoint_bytes + 44 * fp32.total_params * 2  # 45 probes, 14 per task
    assert off.kept_bytes_slimmed == off.kept_bytes == 46 * off.checkpoint_bytes
