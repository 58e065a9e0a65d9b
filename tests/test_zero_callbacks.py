"""Diagnostics and mitigations on real 2-rank DeepSpeed engines (gloo, CPU) at ZeRO 1, 2 and 3 and without ZeRO, checked
against a plain single-process copy of the model; see `zero_worker.py` for what each scenario does."""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from runs import ACCELERATE, REPO, free_port

DIAGNOSTIC_KEYS = ("dormant_ratio", "srank", "feature_norm", "param_norm", "update_ratio", "grad_norm",
                   "dist_from_init", "attn_entropy", "grad_dormant_ratio", "saturated_ratio", "duplicate_ratio",
                   "input_drift", "spectral_norm", "stable_rank")
TASK_END_KEYS = ("duplicate_ratio", "spectral_norm", "stable_rank")  # measured at task ends only
SETUPS = {"zero0": ["0"], "zero1": ["1"], "zero2": ["2"], "zero3": ["3"], "zero3-persist0": ["3", "0"]}  # persist0: all partitioned


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("zero")
    seen = {}
    for label, args in SETUPS.items():
        finished = subprocess.run(
            [str(ACCELERATE), "launch", "--config_file", str(REPO / "configs/accelerate/single_node.yaml"),
             "--num_processes", "2", "--main_process_port", str(free_port()), str(REPO / "tests/zero_worker.py"),
             args[0], str(out), *args[1:]],
            cwd=REPO, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-3000:]
        seen[label] = json.loads((out / f"{label}.json").read_text())
    return seen


@pytest.fixture(params=list(SETUPS))
def seen(request, results):
    return results[request.param]


def test_set_full_is_read_back_used_by_the_next_forward_and_kept_by_the_optimizer(seen):
    assert seen["set_read_back_equal"] and seen["set_survives_step"]
    assert seen["engine_loss_after_set"] == pytest.approx(seen["reference_loss_after_set"], rel=1e-5)
    assert not seen["has_state_before_step"] and seen["has_state_after_step"]


def test_shrink_perturb_without_noise_scales_every_weight_by_lambda(seen):
    assert seen["shrink_exact"]


def test_redo_resets_exactly_the_dormant_units(seen):
    redo = seen["redo"]
    assert set(range(4)) <= set(redo["dormant"][0])
    assert redo["up_rows_changed"] == redo["dormant"] == redo["down_cols_changed"]
    assert all(set(dormant) <= set(zero) for dormant, zero in zip(redo["dormant"], redo["down_cols_zero"]))
    assert 0.01 < redo["fresh_std"] < 0.03  # drawn from the initial N(0, 0.02)
    assert redo["others_unchanged"] and redo["moment_rows_zero"] and redo["moment_rows_kept"]


def test_cbp_replaces_the_lowest_utility_units_the_same_on_every_rank(seen):
    cbp = seen["cbp"]
    assert cbp["up_rows_changed"][1] == [5, 6, 7, 8, 9]  # the units whose outgoing weights were zeroed
    # block 0 also has ReDo's four reset units with zero outgoing weights: five of those nine go
    assert len(cbp["up_rows_changed"][0]) == 5 and set(cbp["up_rows_changed"][0]) <= {0, 1, 2, 3, 5, 6, 7, 8, 9}
    assert cbp["ages_reset"] == cbp["up_rows_changed"]
    assert cbp["utility_same_on_ranks"] and cbp["others_unchanged"]


def test_l2_init_gradient_is_cross_entropy_plus_the_pull_to_initial_weights(seen):
    assert seen["l2_penalty_grad_max"] > 0.1  # the penalty matters, so a missing term would show
    assert seen["l2_grad_max_diff"] < 1e-5


def test_nap_projects_every_block_linear_weight_to_its_initial_norm_keeping_its_direction(seen):
    nap = seen["nap"]
    assert nap["norm_off_before"] > 1e-3  # every norm had moved, so a missing projection would show
    assert nap["norm_off_after"] < 1e-6 and nap["direction_diff"] < 1e-6 and nap["others_unchanged"]


def test_spectral_reg_gradient_is_cross_entropy_plus_the_pull_of_top_singular_values_to_one(seen):
    assert seen["spectral_penalty_grad_max"] > 0.05
    assert seen["spectral_grad_max_diff"] < 1e-5


def test_snr_resets_the_units_whose_silence_is_improbable_at_their_firing_rate(seen):
    snr = seen["snr"]
    assert snr["resets_after_first_step"] == 0  # every unit just fired or has no rate yet
    gap = snr["tokens_per_step"]
    expected = [unit for unit, rate in enumerate(snr["silenced_rates"]) if gap * math.log1p(-rate) < math.log(1e-12)]
    assert expected  # at least one silenced unit fired often enough before to be judged
    assert snr["up_rows_changed"] == [[], expected] == snr["counters_restarted"]
    assert set(expected) <= set(snr["down_cols_zero"][1])
    assert snr["gaps"] == [0.0 if unit in expected else float(gap) for unit in range(4)]
    assert snr["rate_same_on_ranks"] and snr["others_unchanged"]


def test_hare_tortoise_keeps_a_moving_average_per_rank_share_and_resets_the_weights_to_it(seen):
    hare = seen["hare_tortoise"]
    assert hare["kept_before_reset"] == [True, True] and hare["changed_at_reset"]
    assert hare["reset_to_tortoise"] and hare["moments_kept"] and hare["restart_from_weights"]
    world_size = len(hare["shares"])
    if seen["stage"] == 0:  # without ZeRO every rank holds the whole model
        assert hare["shares"] == [hare["numel"]] * world_size
        return
    assert max(hare["shares"]) < hare["numel"]  # each rank holds a share, not a whole copy
    assert hare["numel"] <= sum(hare["shares"]) <= hare["numel"] + world_size * hare["parameters"]  # + ZeRO-3 padding


def test_diagnostics_record_every_key_and_match_independent_figures(seen):
    record = seen["diagnostics"]
    for key in DIAGNOSTIC_KEYS:
        assert math.isfinite(record[key]), key
        assert {f"{key}_l0", f"{key}_l1"} <= record.keys(), key
    assert record["update_ratio"] == pytest.approx(seen["expected_update_ratio"], rel=1e-5)
    assert record["dist_from_init"] == pytest.approx(seen["expected_dist_from_init"], rel=1e-5)
    assert record["grad_norm"] == pytest.approx(seen["engine_grad_norm"], rel=1e-5)
    per_layer_grad = math.sqrt(record["grad_norm_l0"] ** 2 + record["grad_norm_l1"] ** 2)
    assert per_layer_grad < record["grad_norm"]  # embeddings and the final LayerNorm are outside the blocks
    assert record["spectral_norm"] == pytest.approx(seen["expected_spectral_norm"], rel=1e-5)
    assert {"spectral_norm_l1_qkv", "stable_rank_l0_down"} <= record.keys()
    assert record["input_drift"] > 0  # the step moved the blocks' inputs away from the task's start
    assert math.isfinite(record["hessian_top_eig"]) and record["hessian_top_eig"] != 0


def test_every_zero_stage_measures_the_same(results):
    reference = results["zero1"]["diagnostics"]
    for label, seen in results.items():
        assert seen["diagnostics"].keys() == reference.keys()
        for key, value in seen["diagnostics"].items():
            if isinstance(value, float) and key != "time":
                assert value == pytest.approx(reference[key], rel=1e-5, abs=1e-7), (label, key)
