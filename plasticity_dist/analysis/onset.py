"""Onset of plasticity loss: the task count after which probe AUC starts a sustained rise.

The rule, over the post-cycle probes in training order (the cycle-0 baseline is not part of it):
1. Fit AUC on tasks by least squares with a hinge (two lines that meet at a probe with at least two probes
   after it) at every such probe and keep the break with the smallest residual sum of squares; this places a
   kink (a transfer dip or a flat stretch, then a rise) without the shift a moving average gives it. A
   parabola replaces the hinge when it at least halves that sum: a hinge cannot place a smooth U's minimum
   (its best break on a parabola is the middle of the probes, wherever the minimum is).
2. The candidate onset is the hinge's break, or the last probe at the parabola's minimum.
3. The rise is the fitted AUC at the last probe minus the fitted AUC at the candidate. It is sustained when it
   exceeds k standard errors (from the fit's residuals) and `min_rise` × the fitted minimum, at least two
   probes follow the candidate, and the last two probes both lie more than k residual standard deviations
   above the fitted minimum (a lone spike at the end is not a rise). Then the onset is the candidate's
   `tasks_trained`; otherwise (flat, still falling, a lone spike, or fewer than 4 probes) there is no onset
   yet: None.

`onset_interval` resamples the fit's residuals (a residual bootstrap: the probes' task counts are fixed by
the design, so resampling whole probes, as scipy.stats.bootstrap does, would drop the ones that place the
break) and gives the probes around a percentile interval of the break.

A straight rise from the first probe is one line, not a hinge: a hinge whose extra slope does not beat one
line by an F test (level LINE_TEST_LEVEL) gives way to the line, whose break is the first probe (a
left-censored onset, "at or before the first probe").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_PROBES = 4
MIN_RISE = 1e-3
PROBES_AFTER_ONSET = 2
BOOTSTRAP_RESAMPLES = 1000
PARABOLA_MARGIN = 0.5
LINE_TEST_LEVEL = 0.05
_RULE = (
    "the onset is the task count (tokens for stationary runs) of the break of the least-squares hinge fit of AUC "
    "on tasks (two lines meeting at a probe; the first probe where one straight line fits as well by an F test "
    "at level {line_level:g}; a parabola's minimum where a parabola halves the residual sum of squares), provided "
    "the fitted rise from there to the last probe exceeds max(k standard errors, {min_rise:.1%} of the fitted "
    "minimum) with k = {k:g}, at least {after} probes follow it and the last two probes lie more than k residual "
    "standard deviations above the fitted minimum; otherwise (flat, still falling, a lone spike, fewer than "
    "{min_probes} probes) there is no onset yet"
)


def describe_onset_rule(k: float) -> str:
    """The rule in one sentence, for the report."""
    return _RULE.format(k=k, min_rise=MIN_RISE, after=PROBES_AFTER_ONSET, min_probes=MIN_PROBES,
                        line_level=LINE_TEST_LEVEL)


def _hinge_design(tasks: np.ndarray, break_index: int) -> np.ndarray:
    """Columns: the AUC at the break, the slope after it and the slope before it (none at the first probe)."""
    offset = tasks - tasks[break_index]
    columns = [np.ones_like(tasks), np.maximum(offset, 0.0), np.minimum(offset, 0.0)]
    return np.column_stack(columns if break_index else columns[:2])


def _parabola_design(tasks: np.ndarray) -> np.ndarray:
    scaled = (tasks - tasks.mean()) / (tasks[-1] - tasks[0])
    return np.column_stack([np.ones_like(tasks), scaled, scaled ** 2])


def _designs(tasks: np.ndarray) -> list[np.ndarray]:
    """Every hinge whose break has PROBES_AFTER_ONSET probes after it, then the parabola (last)."""
    breaks = range(len(tasks) - PROBES_AFTER_ONSET)
    return [_hinge_design(tasks, index) for index in breaks] + [_parabola_design(tasks)]


def _last_argmin(fitted: np.ndarray) -> np.ndarray:
    """Index of the last minimum of each column."""
    return len(fitted) - 1 - np.argmin(fitted[::-1], axis=0)


def _beats_line(hinge_rss: np.ndarray, line_rss: np.ndarray, aucs: np.ndarray) -> np.ndarray:
    """Whether a hinge's extra slope improves on one straight line (the hinge at the first probe) by an F test
    at LINE_TEST_LEVEL, and by more than rounding; where it does not, the curve is one straight line."""
    degrees_of_freedom = len(aucs) - 3
    improvement = line_rss - hinge_rss
    critical = stats.f.ppf(1 - LINE_TEST_LEVEL, 1, degrees_of_freedom)
    return (improvement > critical * hinge_rss / degrees_of_freedom) & (improvement > 1e-12 * (aucs ** 2).sum(axis=0))


def _best_fits(designs: list[np.ndarray], aucs: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """For each column of `aucs`: the index of the best design, its candidate onset, and every design's
    coefficients (one array per design, a column per curve)."""
    coefficients = [np.linalg.lstsq(design, aucs, rcond=None)[0] for design in designs]
    rss = np.stack([((aucs - design @ coef) ** 2).sum(axis=0) for design, coef in zip(designs, coefficients)])
    parabola = len(designs) - 1
    curves = np.arange(aucs.shape[1])
    best = np.argmin(rss[:parabola], axis=0)
    best = np.where(_beats_line(rss[best, curves], rss[0], aucs), best, 0)
    best = np.where(rss[parabola] < PARABOLA_MARGIN * rss[best, curves], parabola, best)
    parabola_minimum = _last_argmin(designs[-1] @ coefficients[-1])
    candidates = np.where(best == parabola, parabola_minimum, best)
    return best, candidates, coefficients


def _check_probes(tasks: Sequence[int], aucs: Sequence[float]) -> None:
    if len(tasks) != len(aucs):
        raise ValueError(f"onset needs one AUC per probe: {len(tasks)} task counts, {len(aucs)} AUCs")
    if any(later <= earlier for earlier, later in zip(tasks, tasks[1:])):
        raise ValueError(f"probes must be in training order with increasing task counts, got {list(tasks)}")


@dataclass(frozen=True)
class CurveFit:
    """The best-fitting shape of one AUC series and its candidate onset (a probe index)."""

    design: np.ndarray
    coefficients: np.ndarray
    candidate: int
    fitted: np.ndarray
    residual_variance: float

    @classmethod
    def of(cls, designs: list[np.ndarray], aucs: np.ndarray) -> CurveFit:
        best, candidates, coefficients = _best_fits(designs, aucs[:, None])
        design, coef = designs[best[0]], coefficients[best[0]][:, 0]
        fitted = design @ coef
        residual_variance = float(((aucs - fitted) ** 2).sum()) / (len(aucs) - design.shape[1])
        return cls(design, coef, int(candidates[0]), fitted, residual_variance)

    def is_sustained_rise(self, aucs: np.ndarray, k: float, min_rise: float) -> bool:
        """The fitted rise from the candidate to the last probe exceeds k standard errors and `min_rise` × the
        fitted minimum, and so do the last two probes, by k residual standard deviations."""
        if self.candidate > len(aucs) - 1 - PROBES_AFTER_ONSET:
            return False
        contrast = self.design[-1] - self.design[self.candidate]
        rise = float(contrast @ self.coefficients)
        variance = self.residual_variance * float(contrast @ np.linalg.pinv(self.design.T @ self.design) @ contrast)
        minimum = self.fitted[self.candidate]
        last_two_above = bool(np.all(aucs[-2:] - minimum > k * math.sqrt(self.residual_variance)))
        return rise > max(k * math.sqrt(variance), min_rise * abs(minimum)) and last_two_above


def find_onset(tasks: Sequence[int], aucs: Sequence[float], k: float = 3.0, min_rise: float = MIN_RISE) -> int | None:
    """Tasks trained before AUC starts a sustained rise (see the module docstring), or None."""
    _check_probes(tasks, aucs)
    if len(aucs) < MIN_PROBES:
        return None
    observed = np.asarray(aucs, float)
    fit = CurveFit.of(_designs(np.asarray(tasks, float)), observed)
    return int(tasks[fit.candidate]) if fit.is_sustained_rise(observed, k, min_rise) else None


def residual_noise(tasks: Sequence[float], aucs: Sequence[float]) -> tuple[float, int] | None:
    """The residual standard deviation of the rule's best fit and its degrees of freedom; None below
    MIN_PROBES probes."""
    _check_probes(tasks, aucs)
    if len(aucs) < MIN_PROBES:
        return None
    fit = CurveFit.of(_designs(np.asarray(tasks, float)), np.asarray(aucs, float))
    return math.sqrt(fit.residual_variance), len(aucs) - fit.design.shape[1]


def onset_interval(tasks: Sequence[int], aucs: Sequence[float], k: float = 3.0, min_rise: float = MIN_RISE,
                   confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = 0) -> tuple[int, int] | None:
    """Interval of task counts holding the onset: from the probe before to the probe after the residual-bootstrap
    percentile interval of the break (0 before the first probe); None without an onset.

    Each resample adds the fit's residuals, drawn with replacement and inflated by √(n / degrees of freedom),
    to the fitted curve and takes the candidate onset of the refit. The break sits on a probe while a true
    onset lies anywhere between probes, so the interval reaches to the neighbouring probes on both sides
    (`bench/onset_accuracy.py` measures its coverage).
    """
    _check_probes(tasks, aucs)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    if find_onset(tasks, aucs, k, min_rise) is None:
        return None
    task_counts, observed = np.asarray(tasks, float), np.asarray(aucs, float)
    designs = _designs(task_counts)
    fit = CurveFit.of(designs, observed)
    residuals = (observed - fit.fitted) * math.sqrt(len(observed) / (len(observed) - fit.design.shape[1]))
    rng = np.random.default_rng(seed)
    draws = fit.fitted[:, None] + rng.choice(residuals, size=(len(observed), resamples))
    breaks = _best_fits(designs, draws)[1]
    tail = (1 - confidence) / 2
    low, high = np.quantile(breaks, [tail, 1 - tail], method="inverted_cdf")
    return (int(tasks[low - 1]) if low else 0), int(tasks[min(high + 1, len(tasks) - 1)])
