"""Probe noise: the scatter of a run's post-cycle AUCs about the onset rule's fit, and which % changes it explains.

σ is the residual standard deviation of the rule's best fit (a hinge, one line or a parabola) of AUC on tasks,
on n − p degrees of freedom, so it needs the rule's MIN_PROBES post-cycle probes. A % change compares two
AUCs, each with noise σ, so its own noise is √2·σ in % of the reference AUC; a change within `noise_multiple`
of those of zero is "within noise": Student's t quantile on σ's degrees of freedom, since a σ from few probes
or runs is itself uncertain (a 2σ rule on 1 df would call changes of a few σ findings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from plasticity_dist.analysis.onset import residual_noise

WITHIN_NOISE_LEVEL = 0.95  # two-sided


@dataclass(frozen=True)
class ChangeNoise:
    sigma: float  # noise of one AUC
    sigma_pct_change: float  # noise of a % change against the reference AUC: √2·σ / reference, in %
    degrees_of_freedom: int  # of the fit σ comes from


def change_noise(positions: Sequence[float], values: Sequence[float], reference: float) -> ChangeNoise | None:
    """The noise of post-cycle AUCs `values` at `positions` (tasks or tokens, in training order) and of their %
    changes against `reference`; None with too few probes for the onset rule's fit."""
    if reference <= 0:
        raise ValueError(f"reference AUC must be positive, got {reference}")
    noise = residual_noise(positions, values)
    if noise is None:
        return None
    sigma, degrees_of_freedom = noise
    return ChangeNoise(sigma=sigma, sigma_pct_change=100 * math.sqrt(2) * sigma / reference,
                       degrees_of_freedom=degrees_of_freedom)


def noise_multiple(degrees_of_freedom: int) -> float:
    """The σ multiple a change must exceed to lie outside the noise: the two-sided WITHIN_NOISE_LEVEL quantile
    of Student's t on `degrees_of_freedom` (12.71 on 1, 4.30 on 2, 2.36 on 7, 1.96 in the limit)."""
    if degrees_of_freedom < 1:
        raise ValueError(f"a noise estimate needs at least 1 degree of freedom, got {degrees_of_freedom}")
    return float(stats.t.ppf(0.5 + WITHIN_NOISE_LEVEL / 2, degrees_of_freedom))


def within_noise(change: float | None, sigma: float | None, degrees_of_freedom: int) -> bool | None:
    """Whether a change lies within `noise_multiple(degrees_of_freedom)` σ of zero; None when either is unknown."""
    if change is None or sigma is None:
        return None
    return abs(change) <= noise_multiple(degrees_of_freedom) * sigma
