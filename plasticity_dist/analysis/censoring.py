"""Censored onsets and the maximum-likelihood line through them.

The probes pin an onset down only between their first and their last judgeable point:
- right-censored: no onset yet; the onset lies after the last judgeable probe, the third-to-last post-cycle
  probe (the onset rule needs two probes after a candidate), shown "> X";
- left-censored: the rise starts at the first post-cycle probe, so the onset lies at or before it, "≤ X";
- exact otherwise.

`fit_censored_line` fits y = intercept + slope·x with Gaussian errors to such data (a Tobit model): an exact
point adds its density, a right-censored one the probability above its bound, a left-censored one the
probability below it. The slope's interval is where the profile likelihood lies within n·log(1 + t²/(n − 2))
of its maximum (t the Student quantile): without censoring that is exactly the least-squares t-interval,
where the χ² cutoff of large samples would be too narrow for a handful of model sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, special, stats

Censoring = Literal["exact", "right", "left"]
BOUND_SIGNS = {"exact": "", "right": "> ", "left": "≤ "}
MIN_LOG_SIGMA = np.log(1e-6)  # a scatter this small means the likelihood has no maximum
MAX_SLOPE_SPAN = 20.0  # how far from the estimate the profile interval's ends are sought


class NoFit(ValueError):
    """The data cannot support a fit; the message says why (it goes into the report and summary.json)."""


@dataclass(frozen=True)
class OnsetObservation:
    """What probes say about an onset: the tasks and tokens trained before the bounding probe (a geometric mean
    over a replicate group's runs; tasks None for a stationary run, whose onsets are in tokens)."""

    tasks: float | None
    tokens: float | None
    censoring: Censoring

    def describe(self) -> str:
        """"16", "> 24" (no onset after 24 tasks) or "≤ 8" (rising from the first probe at 8 tasks); in tokens
        when the observation has no task count."""
        value = f"{self.tokens:,.0f} tokens" if self.tasks is None else f"{self.tasks:g}"
        return f"{BOUND_SIGNS[self.censoring]}{value}"


def observe_onset(tasks: Sequence[int] | None, tokens: Sequence[int], onset_index: int | None) -> OnsetObservation | None:
    """The onset at post-cycle probe `onset_index` (None: none yet) as an exact or censored observation;
    None when fewer than 3 probes leave no probe judgeable. `tasks` is None for a stationary run."""
    if onset_index is None:
        if len(tokens) < 3:
            return None
        index, censoring = len(tokens) - 3, "right"
    else:
        index, censoring = onset_index, "left" if onset_index == 0 else "exact"
    return OnsetObservation(None if tasks is None else tasks[index], tokens[index], censoring)


def combine_observations(observations: Sequence[OnsetObservation]) -> OnsetObservation | None:
    """One observation of a replicate group's mean log onset: the geometric mean of its runs' task counts (and
    tokens). With right-censored runs among exact ones it is a lower bound (each onset lies above its value,
    so their mean does too), with left-censored ones an upper bound; with both, or none, it bounds nothing:
    None."""
    kinds = {observation.censoring for observation in observations}
    if not observations or {"right", "left"} <= kinds:
        return None
    censoring = "right" if "right" in kinds else "left" if "left" in kinds else "exact"

    def geometric_mean(values: list[float | None]) -> float | None:
        return None if None in values else float(stats.gmean(values))
    return OnsetObservation(geometric_mean([o.tasks for o in observations]),
                            geometric_mean([o.tokens for o in observations]), censoring)


@dataclass(frozen=True)
class CensoredLine:
    intercept: float
    slope: float
    slope_ci: tuple[float | None, float | None]  # None: the likelihood stays within the bound that far out
    sigma: float  # scatter of y about the line


def _negative_log_likelihood(x: np.ndarray, y: np.ndarray, kinds: np.ndarray) -> Callable[[np.ndarray], float]:
    exact, right, left = (kinds == kind for kind in ("exact", "right", "left"))

    def negative_log_likelihood(theta: np.ndarray) -> float:
        intercept, slope, log_sigma = theta
        z = (y - intercept - slope * x) / np.exp(log_sigma)
        log_density = -0.5 * z[exact] ** 2 - 0.5 * np.log(2 * np.pi) - log_sigma
        return -float(log_density.sum() + special.log_ndtr(-z[right]).sum() + special.log_ndtr(z[left]).sum())
    return negative_log_likelihood


def _minimize(function: Callable[[np.ndarray], float], start: Sequence[float]) -> optimize.OptimizeResult:
    bounds = [(None, None)] * (len(start) - 1) + [(MIN_LOG_SIGMA, None)]
    return optimize.minimize(function, np.asarray(start, float), method="L-BFGS-B", bounds=bounds)


def fit_censored_line(x: Sequence[float], y: Sequence[float], censoring: Sequence[Censoring],
                      confidence: float = 0.95) -> CensoredLine:
    """Maximum-likelihood line through exact and censored points (y the bound where censored), with the
    slope's profile-likelihood interval at `confidence`."""
    kinds = np.asarray(censoring)
    if not len(x) == len(y) == len(kinds) or not set(kinds) <= set(BOUND_SIGNS):
        raise ValueError(f"censored fit needs one y and one of {sorted(BOUND_SIGNS)} per x")
    if len(x) < 3 or len(set(np.asarray(x)[kinds == "exact"])) < 2:
        raise NoFit("a censored fit needs 3 or more runs, exact onsets at 2 or more model sizes among them")
    centre = float(np.mean(x))
    x, y = np.asarray(x, float) - centre, np.asarray(y, float)  # centred: intercept and slope uncorrelated
    negative_log_likelihood = _negative_log_likelihood(x, y, kinds)
    slope, intercept = np.polyfit(x[kinds == "exact"], y[kinds == "exact"], 1)
    best = _minimize(negative_log_likelihood, [intercept, slope, np.log(max(np.std(y), 0.1))])
    intercept, slope, log_sigma = best.x
    if log_sigma <= MIN_LOG_SIGMA + 1e-3:
        raise NoFit("the censored fit has no maximum: the exact points lie on a line that the censored ones "
                         "agree with (scatter → 0)")

    t = stats.t.ppf((1 + confidence) / 2, len(x) - 2)
    cutoff = len(x) * np.log1p(t * t / (len(x) - 2))

    def deviance_above_cutoff(fixed_slope: float) -> float:
        profile = _minimize(lambda theta: negative_log_likelihood(np.array([theta[0], fixed_slope, theta[1]])),
                            [intercept, log_sigma])
        return 2 * (profile.fun - best.fun) - cutoff

    def profile_end(direction: float) -> float | None:
        step = 0.1 * max(abs(slope), 1.0)
        while step <= MAX_SLOPE_SPAN:
            if deviance_above_cutoff(slope + direction * step) > 0:
                return optimize.brentq(deviance_above_cutoff, *sorted((slope, slope + direction * step)), xtol=1e-6)
            step *= 2
        return None

    return CensoredLine(intercept=float(intercept - slope * centre), slope=float(slope),
                        slope_ci=(profile_end(-1.0), profile_end(1.0)), sigma=float(np.exp(log_sigma)))
