"""The onset estimator on hand-made curves whose answer is known: each rule of analysis/onset.py, and the probe
noise it and the report's "within noise" rest on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plasticity_dist.analysis.onset import describe_onset_rule, estimate_onset
from plasticity_dist.probe.noise import change_noise, noise_multiple, probe_noise

TASKS = [8.0 * cycle for cycle in range(1, 31)]  # a probe after every cycle of 8 tasks, 30 cycles
EARLY = [*map(float, range(1, 17)), *TASKS[2:]]  # after every task of the first 2 cycles, then every cycle


def rise_after(onset: float, positions=TASKS, before=lambda x: np.zeros_like(x)) -> np.ndarray:
    """AUC 3 with `before(x)` added until `onset`, then a rise of 0.5 % of the AUC per cycle."""
    x = np.asarray(positions, float)
    return 3.0 + before(np.minimum(x, onset)) + 3.0 * 0.005 / 8 * np.maximum(x - onset, 0.0)


def noisy(curve: np.ndarray, sigma_pct: float, rng: np.random.Generator) -> list[float]:
    return list(curve + rng.normal(0, 3.0 * sigma_pct / 100, len(curve)))


def test_a_straight_rise_stays_left_censored_and_rarely_gets_an_inner_onset():
    estimate = estimate_onset(TASKS, list(rise_after(0.0)))
    assert estimate.censoring == "left" and estimate.low == 0 and estimate.high <= TASKS[1]
    rng = np.random.default_rng(0)
    draws = 200
    inner = sum(estimate_onset(TASKS, noisy(rise_after(0.0), 0.3, rng)).censoring == "interval" for _ in range(draws))
    assert inner <= 0.05 * draws


def test_a_flat_bottom_gives_the_start_of_the_rise_not_the_end_of_the_fall():
    fall_then_flat = lambda x: 0.03 * np.maximum(1 - x / 40, 0.0)  # falls 1 % until task 40, flat until 96
    estimate = estimate_onset(TASKS, list(rise_after(96.0, before=fall_then_flat)))
    assert estimate.censoring == "interval" and estimate.onset == 96
    assert 88 <= estimate.low < 96 < estimate.high <= 104
    rng = np.random.default_rng(1)
    draws = 100
    covered = sum((estimate := estimate_onset(TASKS, noisy(rise_after(96.0, before=fall_then_flat), 0.1, rng)))
                  .censoring == "interval" and estimate.low < 96 <= estimate.high for _ in range(draws))
    assert covered >= 0.9 * draws


def test_an_onset_between_probes_becomes_the_interval_of_candidates_around_it():
    estimate = estimate_onset(TASKS, list(rise_after(61.0, before=lambda x: -0.01 * x / 61)))
    assert estimate.censoring == "interval" and estimate.low < 61 <= estimate.high
    assert estimate.high - estimate.low <= 8  # a noise-free kink is pinned within one probe interval
    early = estimate_onset(EARLY, list(rise_after(4.5, EARLY, before=lambda x: -0.01 * x / 4.5)))
    assert early.censoring == "interval" and early.low < 4.5 <= early.high <= 6


def test_an_early_onset_is_left_censored_on_a_cycle_grid_and_pinned_on_a_per_task_grid():
    dip = lambda x: -0.02 * x / 9.4  # the law's 12M onset, 9.4 tasks
    assert estimate_onset(TASKS, list(rise_after(9.4, before=dip))).censoring in ("left", "interval")
    pinned = estimate_onset(EARLY, list(rise_after(9.4, EARLY, before=dip)))
    assert pinned.censoring == "interval" and pinned.low < 9.4 <= pinned.high and pinned.high - pinned.low <= 1


def test_no_rise_is_a_lower_bound_only_where_a_rise_would_have_been_found():
    rng = np.random.default_rng(2)
    quiet = estimate_onset(TASKS, noisy(np.full(30, 3.0), 0.1, rng))
    assert quiet.censoring == "right" and quiet.high is None and TASKS[10] < quiet.low <= TASKS[-3]
    loud = estimate_onset(TASKS, noisy(np.full(30, 3.0), 3.0, rng))
    assert loud.censoring == "undetermined" and loud.low is None and "would not have been found" in loud.reason


def test_flat_and_falling_curves_rarely_get_an_onset():
    rng = np.random.default_rng(3)
    draws = 200
    flat = sum(estimate_onset(TASKS, noisy(np.full(30, 3.0), 0.3, rng)).censoring in ("interval", "left")
               for _ in range(draws))
    falling = sum(estimate_onset(TASKS, noisy(3.0 - 0.001 * np.arange(30), 0.3, rng)).censoring in ("interval", "left")
                  for _ in range(draws))
    assert flat <= 0.05 * draws and falling <= 0.05 * draws


def test_a_lone_spike_at_the_end_is_not_a_sustained_rise():
    aucs = list(3 - 0.01 * np.arange(30))
    aucs[-1] += 1.0
    assert estimate_onset(TASKS, aucs).censoring in ("right", "undetermined")  # the spike also inflates σ


def test_a_diverged_probe_is_kept_as_the_latest_the_onset_can_be():
    rng = np.random.default_rng(6)
    flat = noisy(np.full(20, 3.0), 0.1, rng) + [math.inf] * 10  # no rise before it: the onset lies in between
    estimate = estimate_onset(TASKS, flat)
    assert estimate.censoring == "interval" and 0 < estimate.low < estimate.high == TASKS[20]
    assert "diverged" in estimate.reason
    loud = noisy(np.full(20, 3.0), 3.0, rng) + [math.inf] * 10  # nothing could be seen before it: at or before it
    assert (estimate_onset(TASKS, loud).censoring, estimate_onset(TASKS, loud).high) == ("left", TASKS[20])
    rising = list(rise_after(80.0, before=lambda x: -0.01 * x / 80))
    rising[-1] = math.inf
    capped = estimate_onset(TASKS, rising)
    assert capped.censoring == "interval" and capped.low < 80 <= capped.high <= TASKS[-1]


def test_too_few_probes_leave_the_onset_undetermined_and_bad_input_is_refused():
    assert estimate_onset(TASKS[:3], [3.0, 2.0, 3.0]).censoring == "undetermined"
    with pytest.raises(ValueError, match="one AUC per probe"):
        estimate_onset(TASKS, [3.0])
    with pytest.raises(ValueError, match="increasing"):
        estimate_onset([8, 8, 16, 24], [3.0] * 4)


def test_probe_noise_is_unbiased_on_curved_trends_and_its_degrees_of_freedom_match_its_spread():
    rng = np.random.default_rng(4)
    x = np.asarray(EARLY)
    trend = 3 + 0.02 * np.exp(-x / 30) + 0.0005 * np.maximum(x - 100, 0)
    estimates = [probe_noise(x, trend + rng.normal(0, 0.01, len(x))) for _ in range(2000)]
    variances = np.array([estimate.sigma ** 2 for estimate in estimates]) / 0.01 ** 2
    assert variances.mean() == pytest.approx(1.0, abs=0.03)
    # a χ² on df degrees of freedom, over df, has variance 2 / df
    assert variances.var() == pytest.approx(2 / estimates[0].degrees_of_freedom, rel=0.15)
    assert probe_noise([8, 16], [3.0, 3.1]) is None


def test_within_noise_is_family_wise_so_flat_runs_rarely_show_any_change():
    rng = np.random.default_rng(5)
    runs, flagged = 400, 0
    for _ in range(runs):
        aucs = 3 + rng.normal(0, 0.01, 30)
        noise = change_noise(TASKS, list(aucs), reference=float(aucs[0]), comparisons=29)
        changes = 100 * (aucs[1:] - aucs[0]) / aucs[0]
        flagged += bool(np.any(np.abs(changes) > noise.multiple * noise.sigma_pct_change))
    assert flagged <= 0.07 * runs  # 5 % family-wise, Bonferroni is conservative; σ from the data adds a little
    assert noise_multiple(1e9, 1) == pytest.approx(1.96, abs=0.01)
    assert noise_multiple(1e9, 5) == pytest.approx(2.58, abs=0.01)


def test_rule_text_names_k_the_flat_bottom_and_the_detectable_rise():
    text = describe_onset_rule(2.5)
    assert "k = 2.5" in text and "flat bottom" in text and "2%" in text
