"""Onsets as the intervals the probes pin them to, and the maximum-likelihood line through such intervals.

A run's onset observation is an interval (low, high] in tasks (and tokens): both ends known (interval-censored),
low 0 (left-censored: at or before `high`) or high open (right-censored: after `low`). The onset estimator
gives no observation where its data could not have shown an onset (undetermined): such a run bounds nothing.

`fit_interval_line` fits y = intercept + slope·x + ε, ε ~ N(0, σ²), where each y is only known to lie in
its interval (here y = log T): each run adds the log probability of its interval. The intervals of the slope
and of the line's level at the mean x are where the profile likelihood lies within n·log(1 + t²/(n − 2)) of its
maximum (t the Student quantile): for exact points those are the least-squares t-intervals, where the χ² cutoff
of large samples would be too narrow for a dozen runs. σ is kept at or above `min_scatter`, the spread of a
value within the typical interval: scatter below that cannot be told from none. The line's band at any x
combines the two intervals (uncorrelated at the mean x); a prediction interval adds the scatter σ². (A numerical
Hessian is no alternative: when the intervals all hold one line, the likelihood is flat-topped and its curvature
meaningless.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import optimize, special, stats

Censoring = Literal["interval", "left", "right"]
MIN_LOG_SIGMA = math.log(1e-3)  # a numerical floor under min_scatter (intervals of zero width)
MAX_LOG_SIGMA = math.log(100.0)  # a scatter of e^100 about the line: no line at all
SIGMA_RESTART = 0.3  # the second start of every maximisation: a σ off the plateau of a flat-topped likelihood
SCATTER_FLOOR = 1.0  # of the median interval's spread, median(high − low)/√12 (see min_scatter)
MAX_SPAN = 20.0  # how far from the estimate a profile interval's ends are sought


class NoFit(ValueError):
    """The data cannot support a fit; the message says why (it goes into the report and summary.json)."""


def _bound(value: float | None, unit: str) -> str:
    return "–" if value is None else format(value, ",.4g" if unit == "tasks" else ",.0f")


@dataclass(frozen=True)
class OnsetObservation:
    """Where a run's onset lies: (low, high] in tasks and in tokens; low 0 when open below, high None when open
    above; tasks None for a stationary run, whose onsets are in tokens."""

    tasks: tuple[float, float | None] | None
    tokens: tuple[float, float | None]

    @property
    def censoring(self) -> Censoring:
        low, high = self.tokens
        return "left" if low == 0 else "right" if high is None else "interval"

    def bounds(self, unit: str) -> tuple[float, float | None]:
        """(low, high] in "tasks" or "tokens"."""
        bounds = self.tasks if unit == "tasks" else self.tokens
        if bounds is None:
            raise ValueError(f"this onset observation has no {unit}")
        return bounds

    def describe(self, unit: str) -> str:
        """"(16, 24]", "> 224" (no onset after 224) or "≤ 10" (at or before 10), in `unit`."""
        low, high = self.bounds(unit)
        if self.censoring == "left":
            return f"≤ {_bound(high, unit)}"
        if self.censoring == "right":
            return f"> {_bound(low, unit)}"
        return f"({_bound(low, unit)}, {_bound(high, unit)}]"

    def to_json(self) -> dict[str, object]:
        return {"censoring": self.censoring, "tasks": None if self.tasks is None else list(self.tasks),
                "tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> OnsetObservation:
        tasks, tokens = record["tasks"], record["tokens"]
        return cls(None if tasks is None else tuple(tasks), tuple(tokens))


@dataclass(frozen=True)
class IntervalLine:
    """y = level + slope·(x − centre) with the profile-likelihood intervals of level and slope; σ the scatter."""

    centre: float
    level: float  # the line at x = centre (the data's mean x: level and slope nearly uncorrelated there)
    slope: float
    level_ci: tuple[float | None, float | None]  # None: the likelihood stays within the bound that far out
    slope_ci: tuple[float | None, float | None]
    sigma: float
    degrees_of_freedom: int

    @property
    def intercept(self) -> float:
        return self.level - self.slope * self.centre

    def _interval(self, x: float, confidence: float, scatter: float) -> tuple[float, float]:
        """The line at `x` ± t·√(its variance + `scatter`), Student's t on n − 2; the line's standard error comes
        from the half-widths of the level's and slope's intervals over t (uncorrelated at the centre)."""
        if None in self.level_ci or None in self.slope_ci:
            raise ValueError("the line's intervals are open: it has no band")
        t = stats.t.ppf((1 + confidence) / 2, self.degrees_of_freedom)
        level_se = (self.level_ci[1] - self.level_ci[0]) / (2 * t)
        slope_se = (self.slope_ci[1] - self.slope_ci[0]) / (2 * t)
        spread = math.sqrt(level_se ** 2 + (slope_se * (x - self.centre)) ** 2 + scatter)
        centre = self.level + self.slope * (x - self.centre)
        return centre - t * spread, centre + t * spread

    def mean_interval(self, x: float, confidence: float) -> tuple[float, float]:
        """Confidence interval of the line itself at `x`."""
        return self._interval(x, confidence, 0.0)

    def prediction_interval(self, x: float, confidence: float) -> tuple[float, float]:
        """Interval for a new y at `x`: the line's uncertainty there plus the scatter (σ² scaled by n/(n − 2) from
        the maximum-likelihood RSS/n to the unbiased RSS/(n − 2)): for exact points the textbook least-squares
        interval."""
        return self._interval(x, confidence, self.sigma ** 2 * (self.degrees_of_freedom + 2) / self.degrees_of_freedom)


def min_scatter(low: np.ndarray, high: np.ndarray) -> float:
    """The smallest σ the fit allows: the standard deviation of a value spread evenly over the median two-sided
    interval, median(high − low)/√12. Scatter below the intervals' own width cannot be told from none; taking σ to
    0 there would claim the onsets lie exactly on one line and narrow b's interval to the lines through every
    interval (`bench/law_recovery.py`: coverage 0.73-0.85 at 0.2-0.5 % AUC noise without the floor, 0.90-1.0
    with it)."""
    widths = (high - low)[np.isfinite(low) & np.isfinite(high)]
    return SCATTER_FLOOR * float(np.median(widths)) / math.sqrt(12) if len(widths) else 0.0


def _log_probability(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """log(Φ(upper) − Φ(lower)), stable in both tails (upper > lower)."""
    flip = lower > 0  # in the upper tail, use Φ(−lower) − Φ(−upper)
    low, high = np.where(flip, -upper, lower), np.where(flip, -lower, upper)
    log_high, log_low = special.log_ndtr(high), special.log_ndtr(low)
    return log_high + np.log(np.maximum(-np.expm1(np.minimum(log_low - log_high, 0.0)), 1e-300))


def _negative_log_likelihood(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> Callable[[np.ndarray], float]:
    def negative_log_likelihood(theta: np.ndarray) -> float:
        intercept, slope, log_sigma = theta
        centre, sigma = intercept + slope * x, math.exp(log_sigma)
        return -float(_log_probability((low - centre) / sigma, (high - centre) / sigma).sum())
    return negative_log_likelihood


def _minimize(function: Callable[[np.ndarray], float], start: Sequence[float],
              min_log_sigma: float) -> optimize.OptimizeResult:
    """L-BFGS-B from `start` (log σ last, at least `min_log_sigma`) and from the same point with σ at
    SIGMA_RESTART or more: the likelihood can be flat-topped in σ, and a single start can stop on the plateau."""
    bounds = [(None, None)] * (len(start) - 1) + [(min_log_sigma, MAX_LOG_SIGMA)]
    restart = [*start[:-1], max(start[-1], math.log(SIGMA_RESTART))]
    results = [optimize.minimize(function, np.asarray(point, float), method="L-BFGS-B", bounds=bounds)
               for point in (start, restart)]
    return min(results, key=lambda result: result.fun)


def fit_interval_line(x: Sequence[float], low: Sequence[float], high: Sequence[float],
                      confidence: float = 0.95) -> IntervalLine:
    """Maximum-likelihood line through y known only to lie in (low, high] (−inf / +inf for open ends), with the
    profile-likelihood intervals of its level and slope at `confidence`; σ no smaller than `min_scatter`."""
    x, low, high = (np.asarray(values, float) for values in (x, low, high))
    if not len(x) == len(low) == len(high) or np.any(high <= low):
        raise ValueError("an interval fit needs one interval (low < high) per x")
    if len(x) < 3:
        raise NoFit(f"an interval fit needs 3 or more runs, got {len(x)}")
    centre = float(x.mean())
    x = x - centre  # centred: level and slope nearly uncorrelated
    bounded = np.isfinite(low) & np.isfinite(high)
    midpoints = np.where(bounded, (low + high) / 2, np.where(np.isfinite(low), low, high))
    slope, intercept = np.polyfit(x, midpoints, 1)
    min_log_sigma = math.log(max(min_scatter(low, high), math.exp(MIN_LOG_SIGMA)))
    negative_log_likelihood = _negative_log_likelihood(x, low, high)
    best = _minimize(negative_log_likelihood, [intercept, slope, max(math.log(max(float(np.std(midpoints)), 0.1)),
                                                                    min_log_sigma)], min_log_sigma)
    intercept, slope, log_sigma = best.x

    t = stats.t.ppf((1 + confidence) / 2, len(x) - 2)
    cutoff = len(x) * math.log1p(t * t / (len(x) - 2))

    def profile_interval(index: int) -> tuple[float | None, float | None]:
        """Where the profile likelihood of parameter `index` (0: level, 1: slope) lies within the cutoff."""
        estimate = best.x[index]

        def deviance_above_cutoff(value: float) -> float:
            def fixed(theta: np.ndarray) -> float:
                return negative_log_likelihood(np.insert(theta, index, value))
            profile = _minimize(fixed, np.delete(best.x, index), min_log_sigma)
            return 2 * (profile.fun - best.fun) - cutoff

        def end(direction: float) -> float | None:
            step = 0.05 * max(abs(estimate), 1.0)
            while step <= MAX_SPAN:
                if deviance_above_cutoff(estimate + direction * step) > 0:
                    return optimize.brentq(deviance_above_cutoff, *sorted((estimate, estimate + direction * step)),
                                           xtol=1e-6)
                step *= 2
            return None
        return end(-1.0), end(1.0)

    return IntervalLine(centre=centre, level=float(intercept), slope=float(slope), level_ci=profile_interval(0),
                        slope_ci=profile_interval(1), sigma=float(math.exp(log_sigma)),
                        degrees_of_freedom=len(x) - 2)


def observation_of(low: float | None, high: float | None, tasks: Sequence[float] | None,
                   tokens: Sequence[float]) -> OnsetObservation | None:
    """An onset estimate's (low, high] in the probes' positions (tasks when `tasks` is given, else tokens) as an
    observation in both units (tokens by interpolation between probes); None for an undetermined onset."""
    if low is None:
        return None

    def in_tokens(value: float | None) -> float | None:
        """Tokens at a task count: interpolated between probes, at the last probe's tokens per task beyond it."""
        if value is None or tasks is None:
            return value
        if value > tasks[-1]:
            return value * tokens[-1] / tasks[-1]
        return float(np.interp(value, [0.0, *tasks], [0.0, *tokens]))
    return OnsetObservation(None if tasks is None else (low, high), (in_tokens(low), in_tokens(high)))
