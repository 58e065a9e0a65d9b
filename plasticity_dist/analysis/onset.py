"""Onset of plasticity loss: where a run's probe AUC starts a sustained rise, as an interval with a known error.

The curve model, over the post-cycle probes in training order (positions: tasks, or tokens for stationary runs):
AUC falls (transfer) or stays flat, then rises from the onset T and keeps rising. Candidate fits, by least squares
with the signs constrained (the fall never rises, the rise never falls), for every candidate T (the first probe,
then `SUBDIVISIONS` points per probe interval, with `PROBES_AFTER_ONSET` probes after T):
- a hinge: a line falling (or flat) until T, rising after it;
- a flat bottom: a line falling until a probe B, flat from B to T, rising after T; the onset is where the rise
  starts, not where the fall ends;
each with a linear and an accelerating (quadratic) rise. T at the first probe is one straight line: a rise from
the first probe on. No curve that rises before T fits well at a later T, so a straight rise is not given a later
onset (the search over T cannot invent one, as an unconstrained hinge's can).

The rule:
1. The best fit over every candidate gives the best break. Its rise is sustained when the fitted rise from T to
   the last probe exceeds k standard errors (the fit's own) and `MIN_RISE` of the fitted AUC at T, and the last
   two probes lie more than k residual standard deviations above it (a lone spike at the end is not a rise).
2. The interval: the candidate onsets whose profile residual sum of squares lies within the `CONFIDENCE` F cutoff
   (1 and n − 3 degrees of freedom) of the best, reaching two candidates below the first (a kink between
   candidates fits best as a short flat stretch ending at the next one) and one above the last. It is open below
   (left-censored: at or before its upper end) when it reaches the first probe, and open above when it reaches
   the last candidate.
3. No sustained rise: the onset lies after the last position at which a rise reaching `DETECTABLE_RISE` of the
   AUC by the last probe would have been found with `DETECTION_POWER` at the run's noise (right-censored there);
   where no position qualifies, the onset is undetermined and the estimate says why.
A diverged probe (AUC +inf) ends the series: the onset lies at or before it.

`bench/onset_accuracy.py` (per run) and `bench/law_recovery.py` (through the scaling fit) measure its coverage
and bias on simulated curves of several shapes and noise levels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from plasticity_dist.probe.noise import probe_noise

MIN_PROBES = 4
PROBES_AFTER_ONSET = 2
SUBDIVISIONS = 4
MAX_BOTTOMS = 16
MIN_RISE = 1e-3
CONFIDENCE = 0.95
DETECTABLE_RISE = 0.02
DETECTION_POWER = 0.8
Censoring = Literal["interval", "left", "right", "undetermined"]
_RULE = (
    "the onset is where a sustained rise of the probe AUC starts: least-squares fits of a fall (or a flat stretch) "
    "then a rise, as a hinge or with a flat bottom, with a linear or an accelerating rise, the rise starting at the "
    "first probe or anywhere between probes with at least {after} probes after it; the best fit's rise is "
    "sustained when it exceeds k = {k:g} standard errors and {min_rise:.1%} of the AUC and the last two probes lie "
    "k residual standard deviations above its start; the interval holds every start whose fit lies within the "
    "{confidence:.0%} F cutoff of the best; without a sustained rise the onset lies after the last position where "
    "a rise reaching {detectable:.0%} of the AUC by the last probe would have been found with {power:.0%} power at "
    "the run's noise, and is undetermined where there is none"
)


def describe_onset_rule(k: float) -> str:
    """The rule in one sentence, for the report."""
    return _RULE.format(after=PROBES_AFTER_ONSET, k=k, min_rise=MIN_RISE, confidence=CONFIDENCE,
                        detectable=DETECTABLE_RISE, power=DETECTION_POWER)


@dataclass(frozen=True)
class OnsetEstimate:
    """Where the onset lies, in the probes' positions: (low, high], low 0 when open below, high None when open
    above; `onset` is the best fit's break (interval-censored only); `reason` says how it was found, or why not."""

    censoring: Censoring
    onset: float | None
    low: float | None
    high: float | None
    reason: str


SUBSETS = ((0, 1, 2), (0, 1), (0, 2), (0,))  # the columns kept: all, without the fall, without the rise, neither


@dataclass(frozen=True)
class _Candidates:
    """Every break fit of one probe grid, columns (level, rise after T, fall before the bottom): its onset T, its
    design and, per column subset (SUBSETS), the pseudo-inverses of its design (all stacked)."""

    onsets: np.ndarray
    designs: np.ndarray  # (fits, probes, 3)
    pseudo_inverses: tuple[np.ndarray, ...]  # per subset: (fits, columns, probes)

    def constrained_fits(self, aucs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Least squares of every fit with the rise ≥ 0 and the fall's slope ≥ 0 before the bottom (AUC does
        not rise before T): the optimum is the best subset fit whose coefficients keep those signs.
        Returns the residual sums of squares (fits,) and coefficients (fits, 3) for one curve."""
        best_rss = np.full(len(self.onsets), np.inf)
        best = np.zeros((len(self.onsets), 3))
        for columns, pseudo_inverse in zip(SUBSETS, self.pseudo_inverses):
            coefficients = pseudo_inverse @ aucs
            residuals = aucs - np.einsum("fpc,fc->fp", self.designs[:, :, list(columns)], coefficients)
            rss = (residuals ** 2).sum(axis=1)
            full = np.zeros((len(self.onsets), 3))
            full[:, list(columns)] = coefficients
            better = (full[:, 1] >= 0) & (full[:, 2] >= 0) & (rss < best_rss)
            best_rss = np.where(better, rss, best_rss)
            best = np.where(better[:, None], full, best)
        return best_rss, best


def _break_points(positions: np.ndarray) -> np.ndarray:
    """Candidate onsets: the first probe (a rise from there on), then SUBDIVISIONS points in each probe interval
    up to the probe with PROBES_AFTER_ONSET probes after it."""
    last = len(positions) - 1 - PROBES_AFTER_ONSET
    fractions = np.arange(1, SUBDIVISIONS + 1) / SUBDIVISIONS
    return np.concatenate([positions[:1], *(positions[i] + fractions * (positions[i + 1] - positions[i])
                                            for i in range(last))])


def _bottoms(positions: np.ndarray, onset: float) -> np.ndarray:
    """Candidate ends of the fall before `onset`: the probes after the first and before it, thinned evenly to
    MAX_BOTTOMS (the candidates grow as probes², so long runs are bounded)."""
    before = positions[1:][positions[1:] < onset]
    return before[np.unique(np.linspace(0, len(before) - 1, min(len(before), MAX_BOTTOMS)).round().astype(int))] \
        if len(before) else before


@functools.lru_cache(maxsize=64)
def _candidates(positions: tuple[float, ...]) -> _Candidates:
    """Per candidate onset T: a hinge (the fall runs until T) and a flat bottom from every probe B before T, each
    with a linear and an accelerating (quadratic) rise after T."""
    x = np.asarray(positions, float)
    span = x[-1] - x[0]
    onsets, designs = [], []
    for onset in _break_points(x):
        after = np.maximum(x - onset, 0.0)
        for bottom in [onset, *_bottoms(x, onset)]:
            for rise in (after, after ** 2 / span):
                designs.append(np.column_stack([np.ones_like(x), rise, np.maximum(bottom - x, 0.0)]))
                onsets.append(onset)
    stacked = np.stack(designs)
    pseudo_inverses = tuple(np.linalg.pinv(stacked[:, :, list(columns)]) for columns in SUBSETS)
    return _Candidates(np.asarray(onsets), stacked, pseudo_inverses)


@dataclass(frozen=True)
class _Profile:
    """The constrained fits of one curve, profiled over the onset: each candidate onset's smallest residual sum
    of squares, and the best fit overall."""

    onsets: np.ndarray  # the distinct candidate onsets
    rss: np.ndarray  # per distinct onset
    best: int  # index into the fits
    fit_rss: float
    coefficients: np.ndarray

    @classmethod
    def of(cls, positions: np.ndarray, aucs: np.ndarray) -> _Profile:
        candidates = _candidates(tuple(positions))
        rss, coefficients = candidates.constrained_fits(aucs)
        onsets, inverse = np.unique(candidates.onsets, return_inverse=True)
        profile = np.full(len(onsets), np.inf)
        np.minimum.at(profile, inverse, rss)
        best = int(np.argmin(rss))
        return cls(onsets, profile, best, float(rss[best]), coefficients[best])


def _sustained_rise(positions: np.ndarray, aucs: np.ndarray, profile: _Profile, k: float) -> bool:
    """The best fit's rise from its onset to the last probe exceeds k standard errors and MIN_RISE of the AUC
    there, and the last two probes lie k residual standard deviations above that AUC."""
    design = _candidates(tuple(positions)).designs[profile.best]
    onset = float(_candidates(tuple(positions)).onsets[profile.best])
    kept = np.flatnonzero(np.abs(profile.coefficients) > 0)
    design = design[:, kept]
    residual_variance = profile.fit_rss / (len(aucs) - len(kept))
    start = np.array([np.interp(onset, positions, column) for column in design.T])
    contrast = design[-1] - start
    rise = float(contrast @ profile.coefficients[kept])
    variance = residual_variance * float(contrast @ np.linalg.pinv(design.T @ design) @ contrast)
    level = float(start @ profile.coefficients[kept])
    return (rise > max(k * math.sqrt(variance), MIN_RISE * abs(level))
            and bool(np.all(aucs[-2:] - level > k * math.sqrt(residual_variance))))


def _confidence_set(aucs: np.ndarray, profile: _Profile) -> tuple[float, float | None]:
    """The onsets whose profile residual sum of squares lies within the F cutoff of the best (CONFIDENCE, 1 and
    n − 3 degrees of freedom), from two candidates before the first (a kink between candidates fits best as a
    flat stretch shorter than a step, ending at the candidate after it) to the candidate after the last; 0 below
    when that reaches the first probe (at or before it), open above when the last candidate is inside."""
    degrees_of_freedom = len(aucs) - 3
    cutoff = profile.fit_rss * (1 + stats.f.ppf(CONFIDENCE, 1, degrees_of_freedom) / degrees_of_freedom)
    inside = np.flatnonzero(profile.rss <= cutoff)
    low = 0.0 if inside[0] <= 1 else float(profile.onsets[inside[0] - 2])
    high = None if inside[-1] == len(profile.onsets) - 1 else float(profile.onsets[inside[-1] + 1])
    return low, high


def _right_censored_bound(positions: np.ndarray, aucs: np.ndarray, k: float) -> float | None:
    """The last position at which a rise from flat reaching DETECTABLE_RISE of the mean AUC by the last probe
    would be found with DETECTION_POWER at the run's noise (its rise above k standard errors); None if none."""
    noise = probe_noise(positions, aucs)
    if noise is None:
        return None
    bound = None
    for onset in _break_points(positions):
        design = np.column_stack([np.ones_like(positions), np.maximum(positions - onset, 0.0)])
        contrast = np.array([0.0, positions[-1] - onset])
        standard_error = noise.sigma * math.sqrt(float(contrast @ np.linalg.pinv(design.T @ design) @ contrast))
        if standard_error == 0 or stats.norm.cdf(DETECTABLE_RISE * float(np.mean(aucs)) / standard_error - k) \
                >= DETECTION_POWER:
            bound = float(onset)
    return bound


def _check_probes(positions: Sequence[float], aucs: Sequence[float]) -> None:
    if len(positions) != len(aucs):
        raise ValueError(f"onset needs one AUC per probe: {len(positions)} positions, {len(aucs)} AUCs")
    if any(later <= earlier for earlier, later in zip(positions, positions[1:])):
        raise ValueError(f"probes must be in training order with increasing positions, got {list(positions)}")


def estimate_onset(positions: Sequence[float], aucs: Sequence[float], k: float = 3.0) -> OnsetEstimate:
    """The onset of one run's post-cycle probes (see the module docstring); AUC +inf marks a diverged probe."""
    _check_probes(positions, aucs)
    x, y = np.asarray(positions, float), np.asarray(aucs, float)
    diverged = np.flatnonzero(~np.isfinite(y))
    cap = float(x[diverged[0]]) if len(diverged) else None
    if cap is not None:
        x, y = x[:diverged[0]], y[:diverged[0]]
    estimate = _estimate(x, y, k)
    if cap is None:
        return estimate
    diverged_at = f"the probe at {cap:g} diverged"
    if estimate.censoring in ("interval", "left"):
        high = cap if estimate.high is None else min(estimate.high, cap)
        return OnsetEstimate(estimate.censoring, estimate.onset, estimate.low, high, f"{estimate.reason}; {diverged_at}")
    if estimate.censoring == "right" and estimate.low < cap:
        return OnsetEstimate("interval", None, estimate.low, cap, f"{diverged_at}; before it: {estimate.reason}")
    return OnsetEstimate("left", None, 0.0, cap, f"{diverged_at}; before it: {estimate.reason}")


def _estimate(x: np.ndarray, y: np.ndarray, k: float) -> OnsetEstimate:
    if len(x) < MIN_PROBES:
        return OnsetEstimate("undetermined", None, None, None,
                             f"{len(x)} usable probe{'s' * (len(x) != 1)}; the rule needs {MIN_PROBES}")
    profile = _Profile.of(x, y)
    if not _sustained_rise(x, y, profile, k):
        bound = _right_censored_bound(x, y, k)
        if bound is None:
            return OnsetEstimate("undetermined", None, None, None,
                                 f"no sustained rise, and at this noise a rise of {DETECTABLE_RISE:.0%} by the last "
                                 f"probe would not have been found ({DETECTION_POWER:.0%} power) from any position")
        return OnsetEstimate("right", None, bound, None,
                             f"no sustained rise; one of {DETECTABLE_RISE:.0%} by the last probe starting at or "
                             f"before {bound:g} would have been found with {DETECTION_POWER:.0%} power")
    onset = float(_candidates(tuple(x)).onsets[profile.best])
    low, high = _confidence_set(y, profile)
    if high is None:
        if low == 0:
            return OnsetEstimate("undetermined", None, None, None, "a rise whose start the probes do not pin down: "
                                 "from before the first probe to after the last judgeable one")
        return OnsetEstimate("right", onset, low, None, "a rise that may start after the last judgeable probe")
    if low == 0:
        straight = onset <= x[0]
        return OnsetEstimate("left", None if straight else onset, 0.0, high,
                             "a rise from the first probe" if straight else "a break near the first probe")
    return OnsetEstimate("interval", onset, low, high, "a fall or a flat stretch, then a sustained rise")
