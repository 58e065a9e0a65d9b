"""Probe AUC, its % change, the onset of plasticity loss and the scaling fit, on hand-made curves."""

from __future__ import annotations

import numpy as np
import pytest

from plasticity_dist.analysis.auc import auc_pct_change, curve_auc
from plasticity_dist.analysis.onset import find_onset
from plasticity_dist.analysis.scaling import STUDY_LAW, fit_power_law, predict_onset

TASKS = [8 * cycle for cycle in range(1, 13)]  # 8 tasks per cycle, 12 cycles
CYCLES = np.arange(12)


def test_auc_of_a_constant_curve_is_that_constant_at_uneven_eval_points():
    assert curve_auc([0, 10, 15, 100], [2.5] * 4) == pytest.approx(2.5)


def test_auc_is_the_trapezoid_area_over_the_token_span():
    # trapezoids: 1000 * (4 + 2) / 2 + 3000 * (2 + 1) / 2 = 7500 over a span of 4000 tokens
    assert curve_auc([0, 1000, 4000], [4.0, 2.0, 1.0]) == pytest.approx(1.875)
    # the span, not the start, divides: same curve shifted by 500 tokens
    assert curve_auc([500, 1500, 4500], [4.0, 2.0, 1.0]) == pytest.approx(1.875)


@pytest.mark.parametrize("tokens, losses, message", [
    ([0], [1.0], "at least 2"),
    ([0, 1], [1.0], "one loss per eval point"),
    ([0, 2, 2], [1.0, 1.0, 1.0], "strictly increasing"),
    ([0, 1], [1.0, float("nan")], "finite"),
])
def test_auc_refuses_a_bad_curve(tokens, losses, message):
    with pytest.raises(ValueError, match=message):
        curve_auc(tokens, losses)


def test_auc_pct_change_is_positive_when_probing_got_worse():
    assert auc_pct_change(3.3, 3.0) == pytest.approx(10.0)
    assert auc_pct_change(2.7, 3.0) == pytest.approx(-10.0)
    assert auc_pct_change(3.0, 3.0) == 0.0


def test_flat_auc_has_no_onset():
    assert find_onset(TASKS, [3.0] * 12) is None


def test_u_shaped_auc_has_its_onset_at_the_minimum():
    assert find_onset(TASKS, list(3 + 0.02 * (CYCLES - 5) ** 2)) == TASKS[5]


def test_flat_then_rising_auc_has_its_onset_at_the_end_of_the_flat_stretch():
    aucs = [3.0] * 6 + [3.0 + 0.1 * i for i in range(1, 7)]
    # the centred average already sees the first rising probe, so the last flat probe or the one before it
    assert find_onset(TASKS, aucs) in (TASKS[4], TASKS[5])


def test_monotone_falling_auc_has_no_onset():
    assert find_onset(TASKS, list(3 - 0.05 * CYCLES)) is None


def test_noisy_u_has_its_onset_near_the_minimum_and_noise_alone_rarely_has_one():
    rng = np.random.default_rng(0)
    draws = 200
    near, false_alarms = 0, 0
    for _ in range(draws):
        noise = rng.normal(0, 0.03, 12)  # the U rises 0.72 = 24 sigma from its minimum
        onset = find_onset(TASKS, list(3 + 0.02 * (CYCLES - 5) ** 2 + noise))
        near += onset is not None and abs(onset - TASKS[5]) <= 8  # within one cycle of the true minimum
        false_alarms += find_onset(TASKS, list(3 + noise)) is not None
        assert find_onset(TASKS, list(3 - 0.05 * CYCLES + noise)) is None
    assert near >= 0.95 * draws
    assert false_alarms <= 0.05 * draws


def test_a_lone_spike_at_the_end_is_not_a_sustained_rise():
    aucs = list(3 - 0.05 * CYCLES)
    aucs[-1] += 1.0
    assert find_onset(TASKS, aucs) is None


def test_too_few_probes_have_no_onset():
    assert find_onset(TASKS[:3], [3.0, 2.0, 3.0]) is None


def test_fit_recovers_a_known_law_within_its_confidence_interval():
    rng = np.random.default_rng(1)
    sizes = np.array([5e6, 12e6, 27e6, 53e6, 106e6, 314e6, 1e9])
    a, b = 2e-4, 0.7
    onsets = a * sizes ** b * np.exp(rng.normal(0, 0.05, len(sizes)))
    fit = fit_power_law(sizes, onsets)
    assert fit.b_ci[0] <= b <= fit.b_ci[1] and fit.a_ci[0] <= a <= fit.a_ci[1]
    assert fit.b == pytest.approx(b, abs=0.05) and fit.n == len(sizes)


def test_fit_needs_three_model_sizes():
    with pytest.raises(ValueError, match="2 model sizes .* 3 or more"):
        fit_power_law([5e6, 5e6, 1e7], [10, 12, 20])


def test_published_law_puts_a_1b_model_at_about_360_tasks():
    tasks = predict_onset(1e9, STUDY_LAW)
    assert tasks == pytest.approx(360, abs=1)
    assert tasks * 5e9 == pytest.approx(1.8e12, rel=0.01)
