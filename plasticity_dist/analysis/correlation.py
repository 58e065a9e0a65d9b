"""Spearman rank correlation in numpy (no scipy): Pearson's r of the average ranks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_POINTS = 3


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1; tied values share the mean of the ranks they span."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho of paired values; None for fewer than 3 pairs or a constant side (rho is undefined)."""
    if len(x) != len(y):
        raise ValueError(f"rank correlation needs paired values: {len(x)} x, {len(y)} y")
    if len(x) < MIN_POINTS:
        return None
    x_ranks, y_ranks = average_ranks(x), average_ranks(y)
    if x_ranks.std() == 0 or y_ranks.std() == 0:
        return None
    return float(np.corrcoef(x_ranks, y_ranks)[0, 1])
