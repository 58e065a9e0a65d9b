"""Probe noise: the scatter σ of one run's post-cycle AUCs, and which % changes it explains (the report's rule,
and the early warning's, so that the trainer never calls a change the report marks "within noise" a decline).

σ comes from local-linear pseudo-residuals (Gasser, Sroka & Jennen-Steinmetz 1986): each inner probe's distance
from the straight line through its two neighbours, scaled to unit variance under independent noise. A trend
that is linear over three neighbouring probes cancels, so σ needs no model of the curve (fitting one would put
its lack of fit into σ), and unequal probe spacing is allowed. Its degrees of freedom are Satterthwaite's for
that quadratic form (neighbouring pseudo-residuals share probes, so fewer than n − 2); it needs 3 post-cycle
probes.

A % change compares two AUCs, each with noise σ, so its own noise is √2·σ in % of the reference AUC. A run's
changes are judged together: a change lies outside the noise when it exceeds `noise_multiple(df, m)` times
that σ, Student's t at the two-sided family-wise level WITHIN_NOISE_LEVEL over the run's m changes
(Bonferroni), so that a flat run shows any change outside the noise at most 5 % of the time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

WITHIN_NOISE_LEVEL = 0.95  # two-sided, family-wise over a run's changes
MIN_NOISE_PROBES = 3
NOISE_METHOD = "local-linear pseudo-residuals (Gasser et al. 1986)"


@dataclass(frozen=True)
class ProbeNoise:
    sigma: float  # noise of one AUC
    degrees_of_freedom: float


@dataclass(frozen=True)
class ChangeNoise:
    sigma: float  # noise of one AUC
    sigma_pct_change: float  # noise of a % change against the reference AUC: √2·σ / reference, in %
    degrees_of_freedom: float
    comparisons: int  # the run's changes judged together
    multiple: float  # the σ multiple a change must exceed to lie outside the noise
    method: str = NOISE_METHOD


def describe_noise_rule() -> str:
    """How σ and "within noise" are computed, for the report (one place for the text and the code)."""
    return (f"σ is the noise of one AUC from {NOISE_METHOD}: each inner post-cycle probe's distance from the "
            f"straight line through its two neighbours, scaled to unit variance, {MIN_NOISE_PROBES} or more post-cycle "
            "probes, with Satterthwaite's degrees of freedom (neighbouring pseudo-residuals share probes); no curve "
            "is fit, so σ holds no lack of fit. A % change compares two AUCs, so its σ is √2·σ in % of the reference "
            "AUC. \"Within noise\" marks a change within t·σ of zero, t Student's two-sided quantile on σ's degrees "
            f"of freedom at the family-wise level {WITHIN_NOISE_LEVEL:.0%} over the run's m changes (Bonferroni: "
            f"each at {1 - WITHIN_NOISE_LEVEL:.0%}/m), so a run without change shows any change outside the noise at "
            f"most {1 - WITHIN_NOISE_LEVEL:.0%} of the time")


def _pseudo_residual_rows(positions: np.ndarray) -> np.ndarray:
    """One row per inner probe: the weights giving its pseudo-residual, scaled to unit variance per unit σ²."""
    rows = np.zeros((len(positions) - 2, len(positions)))
    for i in range(1, len(positions) - 1):
        left = (positions[i + 1] - positions[i]) / (positions[i + 1] - positions[i - 1])
        weights = np.array([-left, 1.0, -(1 - left)])
        rows[i - 1, i - 1:i + 2] = weights / np.linalg.norm(weights)
    return rows


def probe_noise(positions: Sequence[float], aucs: Sequence[float]) -> ProbeNoise | None:
    """σ of one AUC from the pseudo-residuals of finite AUCs at increasing `positions`, with its degrees of
    freedom; None below MIN_NOISE_PROBES probes."""
    if len(positions) < MIN_NOISE_PROBES:
        return None
    rows = _pseudo_residual_rows(np.asarray(positions, float))
    quadratic = rows.T @ rows / len(rows)  # σ̂² = yᵀ Q y, unbiased under independent noise
    pseudo_residuals = rows @ np.asarray(aucs, float)
    variance = float(pseudo_residuals @ pseudo_residuals) / len(rows)
    degrees_of_freedom = float(np.trace(quadratic) ** 2 / np.trace(quadratic @ quadratic))
    return ProbeNoise(math.sqrt(variance), degrees_of_freedom)


def noise_multiple(degrees_of_freedom: float, comparisons: int = 1) -> float:
    """The σ multiple a change must exceed to lie outside the noise: Student's t on `degrees_of_freedom` at the
    two-sided level WITHIN_NOISE_LEVEL shared by `comparisons` (12.71 for one comparison on 1 df, 1.96 in the
    limit; 2.58 for 5 comparisons in the limit)."""
    if degrees_of_freedom <= 0:
        raise ValueError(f"a noise estimate needs positive degrees of freedom, got {degrees_of_freedom}")
    if comparisons < 1:
        raise ValueError(f"comparisons must be at least 1, got {comparisons}")
    return float(stats.t.ppf(1 - (1 - WITHIN_NOISE_LEVEL) / (2 * comparisons), degrees_of_freedom))


def change_noise(positions: Sequence[float], aucs: Sequence[float], reference: float,
                 comparisons: int) -> ChangeNoise | None:
    """The noise of post-cycle AUCs at `positions` and of their `comparisons` % changes against `reference`;
    None with fewer than MIN_NOISE_PROBES probes."""
    if reference <= 0:
        raise ValueError(f"reference AUC must be positive, got {reference}")
    noise = probe_noise(positions, aucs)
    if noise is None:
        return None
    return ChangeNoise(sigma=noise.sigma, sigma_pct_change=100 * math.sqrt(2) * noise.sigma / reference,
                       degrees_of_freedom=noise.degrees_of_freedom, comparisons=max(comparisons, 1),
                       multiple=noise_multiple(noise.degrees_of_freedom, max(comparisons, 1)))


def within_noise(change: float | None, sigma: float | None, multiple: float) -> bool | None:
    """Whether a change lies within `multiple` σ of zero; None when either is unknown."""
    if change is None or sigma is None:
        return None
    return abs(change) <= multiple * sigma
