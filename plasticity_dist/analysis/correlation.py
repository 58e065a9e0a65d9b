"""Spearman's rank correlation (scipy's) with a confidence interval, and the interval of a mean of several.

The interval is Fisher's z = atanh(ρ) ± q·SE, back-transformed by tanh, with Bonett and Wright's (2000)
standard error for Spearman's ρ, SE = √((1 + ρ²/2) / (n − 3)); q is the two-sided normal quantile. At ρ = ±1, z
is infinite: the bound on that side is ±1 and the other bound is taken at ρ moved half a rank step toward 0
(|ρ| = 1 − 6/(n³ − n), halfway to the largest |ρ| below 1 that n untied points allow).
`tests/test_correlation.py` measures its coverage on simulated data.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

MIN_PAIRS = 3  # where rho is defined at all
MIN_POINTS = 5  # where it is given: with 4 points the 95 % interval about rho = 0 is ±0.96, with 5 ±0.88
CONFIDENCE = 0.95
ROUNDING = 1e-9


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho of n pairs with its interval; both None, with the reason, where they are not given."""

    rho: float | None
    ci: tuple[float, float] | None
    n: int
    reason: str | None


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho of paired values (ties share their mean rank); None for fewer than 3 pairs or a constant
    side (rho is undefined)."""
    if len(x) != len(y):
        raise ValueError(f"rank correlation needs paired values: {len(x)} x, {len(y)} y")
    if len(x) < MIN_PAIRS or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(stats.spearmanr(x, y).statistic)


def _fisher_z(rho: float, n: int, side: int) -> float:
    """atanh(rho) for the bound on `side` (−1 lower, +1 upper): infinite at rho = side, and rho = −side moved
    half a rank step toward 0."""
    if abs(rho) > 1 - ROUNDING:  # scipy's rho of a perfect ranking may miss ±1 by rounding
        return side * math.inf if rho * side > 0 else math.atanh(math.copysign(1 - 6 / (n ** 3 - n), rho))
    return math.atanh(rho)


def mean_interval(rhos: Sequence[float], ns: Sequence[int], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The interval of the mean of independent Spearman rhos `rhos` of `ns` pairs each (of one rho: its own),
    from the mean of their Fisher z's and its standard error √(Σ SE²) / k."""
    if not rhos or len(rhos) != len(ns) or min(ns) <= MIN_PAIRS:
        raise ValueError(f"an interval needs one or more rhos, each of more than {MIN_PAIRS} pairs; got {list(ns)}")
    quantile = float(stats.norm.ppf(0.5 + confidence / 2))
    se = math.sqrt(sum((1 + rho ** 2 / 2) / (n - 3) for rho, n in zip(rhos, ns))) / len(rhos)
    low, high = (math.tanh(statistics.fmean(_fisher_z(rho, n, side) for rho, n in zip(rhos, ns)) + side * quantile * se)
                 for side in (-1, 1))
    return low, high


def rank_correlation(x: Sequence[float], y: Sequence[float], confidence: float = CONFIDENCE) -> RankCorrelation:
    """Spearman's rho with its interval; None below MIN_POINTS pairs or for a constant side."""
    n = len(x)
    rho = spearman(x, y)
    if n < MIN_POINTS:
        return RankCorrelation(None, None, n, f"{n} points; an interval needs at least {MIN_POINTS}")
    if rho is None:
        return RankCorrelation(None, None, n, "constant values")
    return RankCorrelation(rho, mean_interval([rho], [n], confidence), n, None)
