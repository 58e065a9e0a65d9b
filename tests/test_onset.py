"""The onset rule on curves with known onsets: a noise-free kink exactly, noisy kinks within a cycle, and its
bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from plasticity_dist.analysis.onset import describe_onset_rule, find_onset, onset_interval

TASKS = [8 * cycle for cycle in range(1, 16)]  # 15 probes, one per cycle of 8 tasks
FLAT_THEN_RISE_AT_64 = [3.0 + 0.03 * max(tasks - 64, 0) / 8 for tasks in TASKS]


def dip_then_rise(onset: int) -> np.ndarray:
    """A transfer dip of 1% until `onset`, then a rise of 0.5% of the AUC per cycle."""
    tasks = np.array(TASKS, float)
    return 3.0 * (1 - 0.01 * (1 - np.exp(-np.minimum(tasks, onset) / 16)) + 0.005 * np.maximum(tasks - onset, 0) / 8)


def test_a_noise_free_kink_is_found_at_its_probe_not_a_cycle_early():
    assert find_onset(TASKS, FLAT_THEN_RISE_AT_64) == 64
    for onset in TASKS[1:-3]:
        assert find_onset(TASKS, list(dip_then_rise(onset))) == onset


def test_noisy_kinks_at_a_tenth_of_a_percent_land_within_one_cycle_not_at_the_first_probe():
    rng = np.random.default_rng(0)
    draws = 200
    estimates = [find_onset(TASKS, list(np.array(FLAT_THEN_RISE_AT_64) + rng.normal(0, 0.003, len(TASKS))))
                 for _ in range(draws)]
    assert sum(estimate is not None and abs(estimate - 64) <= 8 for estimate in estimates) >= 0.9 * draws
    assert estimates.count(TASKS[0]) == 0


def test_flat_noise_rarely_has_an_onset():
    rng = np.random.default_rng(1)
    draws = 400
    false_alarms = sum(find_onset(TASKS, list(3.0 + rng.normal(0, 0.003, len(TASKS)))) is not None
                       for _ in range(draws))
    assert false_alarms <= 0.05 * draws


def test_a_smooth_u_has_its_onset_at_its_minimum_wherever_it_lies():
    cycles = np.arange(1, len(TASKS) + 1)
    for minimum in (3, 6, 10):
        assert find_onset(TASKS, list(3 + 0.01 * (cycles - minimum) ** 2)) == 8 * minimum


def test_interval_reaches_the_probes_around_a_noise_free_break_and_holds_a_noisy_onset():
    assert onset_interval(TASKS, FLAT_THEN_RISE_AT_64) == (56, 72)
    rng = np.random.default_rng(2)
    aucs = list(dip_then_rise(64) + rng.normal(0, 0.003, len(TASKS)))
    low, high = onset_interval(TASKS, aucs, seed=3)
    assert low <= find_onset(TASKS, aucs) <= high and low <= 64 <= high
    assert onset_interval(TASKS, aucs, seed=3) == (low, high)  # seeded


def test_interval_is_none_without_an_onset_and_refuses_a_bad_confidence():
    assert onset_interval(TASKS, [3.0] * len(TASKS)) is None
    with pytest.raises(ValueError, match="confidence"):
        onset_interval(TASKS, FLAT_THEN_RISE_AT_64, confidence=1.5)


def test_a_straight_rise_from_the_first_probe_is_put_at_the_first_probe():
    rng = np.random.default_rng(4)
    draws = 200
    rise = 3.0 * (1 + 0.005 * np.arange(len(TASKS)))
    estimates = [find_onset(TASKS, list(rise + rng.normal(0, 0.003, len(TASKS)))) for _ in range(draws)]
    assert find_onset(TASKS, list(rise)) == TASKS[0]
    assert estimates.count(TASKS[0]) >= 0.75 * draws
    assert onset_interval(TASKS, list(rise)) == (0, TASKS[1])


def test_rule_text_names_k_and_the_hinge():
    text = describe_onset_rule(2.5)
    assert "k = 2.5" in text and "hinge" in text
