"""Spearman's rank correlation (scipy's), None where it is undefined."""

from __future__ import annotations

from collections.abc import Sequence

from scipy import stats

MIN_POINTS = 3


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho of paired values (ties share their mean rank); None for fewer than 3 pairs or a constant
    side (rho is undefined)."""
    if len(x) != len(y):
        raise ValueError(f"rank correlation needs paired values: {len(x)} x, {len(y)} y")
    if len(x) < MIN_POINTS or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(stats.spearmanr(x, y).statistic)
