"""Spearman's rho with its interval: a hand computation, the coverage measured on simulated data, and no rho
where the interval is undefined or uninformative."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plasticity_dist.analysis.correlation import MIN_POINTS, mean_interval, rank_correlation, spearman

SIMULATIONS = 1000


def test_interval_is_fisher_z_with_the_bonett_wright_standard_error():
    # n = 10, rho = 0.5: z = atanh(0.5) = 0.549306, SE = sqrt(1.125 / 7) = 0.400892, 1.959964 SE = 0.785733
    low, high = mean_interval([0.5], [10])
    assert (low, high) == (pytest.approx(math.tanh(0.549306 - 0.785733), abs=1e-6),
                           pytest.approx(math.tanh(0.549306 + 0.785733), abs=1e-6))
    assert (low, high) == (pytest.approx(-0.2321, abs=1e-4), pytest.approx(0.8705, abs=1e-4))
    # the mean of two: mean z, SE = sqrt(SE1^2 + SE2^2) / 2
    z, se = (math.atanh(0.5) + math.atanh(-0.2)) / 2, math.sqrt(1.125 / 7 + 1.02 / 9) / 2
    assert mean_interval([0.5, -0.2], [10, 12]) == (pytest.approx(math.tanh(z - 1.959964 * se), abs=1e-6),
                                                     pytest.approx(math.tanh(z + 1.959964 * se), abs=1e-6))


def test_a_perfect_ranking_bounds_its_own_side_at_one_and_the_other_half_a_rank_step_in():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    rising, falling = rank_correlation(x, [2.0, 3.0, 5.0, 7.0, 11.0]), rank_correlation(x, [5.0, 4.0, 3.0, 2.0, 1.0])
    assert rising.rho == pytest.approx(1.0) and rising.n == 5 and rising.reason is None
    # rho moved to 1 - 6 / (5^3 - 5) = 0.95 for the lower bound, SE at rho = 1: sqrt(1.5 / 2)
    expected_low = math.tanh(math.atanh(0.95) - 1.959964 * math.sqrt(0.75))
    assert rising.ci == (pytest.approx(expected_low, abs=1e-6), 1.0) and 0 < expected_low < 0.2
    assert falling.ci == (-1.0, pytest.approx(-expected_low, abs=1e-6))


def test_no_rho_below_the_minimum_points_or_for_constant_values_and_the_reason_says_so():
    assert MIN_POINTS == 5
    few = rank_correlation([1, 2, 3, 4], [1, 2, 3, 4])
    assert (few.rho, few.ci, few.n) == (None, None, 4) and "at least 5" in few.reason
    assert spearman([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)  # defined, but its interval spans ±0.96 at 0
    constant = rank_correlation([1, 2, 3, 4, 5], [2, 2, 2, 2, 2])
    assert (constant.rho, constant.ci, constant.n, constant.reason) == (None, None, 5, "constant values")
    with pytest.raises(ValueError, match="more than 3 pairs"):
        mean_interval([0.5], [3])


def spearman_of_normal(r: float) -> float:
    """Spearman's rho of a bivariate normal population with Pearson correlation r."""
    return 6 / math.pi * math.asin(r / 2)


@pytest.mark.parametrize("n, r", [(5, 0.0), (5, 0.9), (8, 0.5), (12, 0.8)])
def test_interval_covers_the_true_rho_about_95_percent_of_the_time(n, r):
    rng = np.random.default_rng(n)
    truth = spearman_of_normal(r)
    covered = 0
    for _ in range(SIMULATIONS):
        x, y = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=n).T
        low, high = rank_correlation(list(x), list(y)).ci
        covered += low <= truth <= high
    # measured 0.94-0.99 over n = 5-20 and r = 0-0.95 at 2000 draws: conservative at the smallest n
    assert 0.92 <= covered / SIMULATIONS <= 0.995


def test_interval_of_the_mean_over_runs_covers_their_common_rho():
    rng = np.random.default_rng(0)
    truth, covered = spearman_of_normal(0.6), 0
    for _ in range(SIMULATIONS):
        runs = [rank_correlation(*map(list, rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=n).T))
                for n in (5, 7, 9)]
        low, high = mean_interval([run.rho for run in runs], [run.n for run in runs])
        covered += low <= truth <= high
    assert 0.92 <= covered / SIMULATIONS <= 0.995
