"""Scaling law of the onset: T = a · P^b (tasks against non-embedding parameters), fit in log space.

Two fits over the replicate groups of continual runs without mitigations (a group, its runs' geometric-mean
onset, is one point; a run alone is a group of one), each only from onsets at `MIN_SIZES` or more model
sizes (fewer leave a line with no scatter to give it an interval):
- `fit_power_law`: least squares over the exact onsets, with t-intervals (n − 2 degrees of freedom);
- `fit_censored_power_law`: maximum likelihood with Gaussian errors in log T that also takes runs without an
  onset (right-censored) and runs rising from their first probe (left-censored) as the bounds they are, with
  a profile-likelihood interval on b.
`STUDY_LAW` is the study's published fit.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from plasticity_dist.analysis.censoring import NoFit, OnsetObservation, fit_censored_line

MIN_SIZES = 3
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PowerLaw:
    a: float
    b: float
    a_ci: tuple[float, float] | None = None
    b_ci: tuple[float | None, float | None] | None = None  # None at an end the data leave open
    n: int = 0  # how many points (replicate groups) it was fit on (0: given, not fit)
    sigma: float | None = None  # scatter of log T about the law


STUDY_LAW = PowerLaw(a=1.3e-5, b=0.8269)


def _log_points(params: Sequence[float], onsets: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    if len(params) != len(onsets):
        raise ValueError(f"scaling fit needs one onset per run: {len(params)} sizes, {len(onsets)} onsets")
    if min(params, default=1) <= 0 or min(onsets, default=1) <= 0:
        raise ValueError(f"scaling fit needs positive sizes and onsets, got sizes {list(params)}, onsets {list(onsets)}")
    return np.log(np.asarray(params, float)), np.log(np.asarray(onsets, float))


def _require_sizes(params: Sequence[float], what: str) -> None:
    sizes = sorted(set(params))
    if len(sizes) < MIN_SIZES:
        listed = f" ({', '.join(f'{size:,.0f}' for size in sizes)} params)" if sizes else ""
        raise NoFit(f"{what} at {len(sizes)} model size{'s' * (len(sizes) != 1)}{listed}; a fit needs "
                    f"{MIN_SIZES} or more")


def fit_power_law(params: Sequence[float], onsets: Sequence[float], confidence: float = CONFIDENCE) -> PowerLaw:
    """Least squares of log T = log a + b log P over exact onsets, with t-intervals on log a and b."""
    log_params, log_onsets = _log_points(params, onsets)
    _require_sizes(params, "exact onsets")
    line = stats.linregress(log_params, log_onsets)
    degrees_of_freedom = len(log_params) - 2
    t = stats.t.ppf((1 + confidence) / 2, degrees_of_freedom)
    residuals = log_onsets - line.intercept - line.slope * log_params
    return PowerLaw(
        a=float(np.exp(line.intercept)), b=float(line.slope),
        a_ci=(float(np.exp(line.intercept - t * line.intercept_stderr)),
              float(np.exp(line.intercept + t * line.intercept_stderr))),
        b_ci=(float(line.slope - t * line.stderr), float(line.slope + t * line.stderr)),
        n=len(log_params), sigma=float(np.sqrt(residuals @ residuals / degrees_of_freedom)))


def fit_censored_power_law(params: Sequence[float], observations: Sequence[OnsetObservation],
                           confidence: float = CONFIDENCE) -> PowerLaw:
    """Maximum likelihood of log T = log a + b log P + ε, ε ~ N(0, σ²), over exact and censored onsets."""
    log_params, log_bounds = _log_points(params, [observation.tasks for observation in observations])
    _require_sizes([p for p, o in zip(params, observations) if o.censoring != "right"], "onsets")
    line = fit_censored_line(log_params, log_bounds, [observation.censoring for observation in observations],
                             confidence)
    return PowerLaw(a=float(np.exp(line.intercept)), b=line.slope, b_ci=line.slope_ci, n=len(log_params),
                    sigma=line.sigma)


def law_of(fit: dict[str, Any]) -> PowerLaw:
    """A fit as summary.json stores it, back as a `PowerLaw`."""
    return PowerLaw(a=float(fit["a"]), b=float(fit["b"]), a_ci=fit.get("a_ci"), b_ci=fit.get("b_ci"),
                    n=fit.get("n", 0), sigma=fit.get("sigma"))


def predict_onset(params: float, law: PowerLaw = STUDY_LAW) -> float:
    """Predicted onset in tasks for a model of `params` non-embedding parameters."""
    if params <= 0:
        raise ValueError(f"model size must be positive, got {params}")
    return law.a * params ** law.b


def fitted_groups(groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary's replicate groups the law is fit on: continual, without mitigations, with an onset
    observation (each group one point, however many runs it has)."""
    return [group for group in groups
            if group["problem"] == "continual" and not group["mitigations"] and group["onset_observation"] is not None]


def _fit_record(law: PowerLaw, groups: Sequence[dict[str, Any]], observations: Sequence[OnsetObservation]) -> dict[str, Any]:
    counts = Counter(observation.censoring for observation in observations)
    return {**asdict(law), "runs": sum(group["n"] for group in groups),
            "sizes": len({group["non_embedding_params"] for group in groups}), "confidence": CONFIDENCE,
            "exact": counts["exact"], "right_censored": counts["right"], "left_censored": counts["left"]}


def _fit_entry(key: str, fit: Callable[[], PowerLaw], groups: Sequence[dict[str, Any]],
               observations: Sequence[OnsetObservation]) -> dict[str, Any]:
    try:
        return {key: _fit_record(fit(), groups, observations), f"{key}_reason": None}
    except NoFit as reason:
        return {key: None, f"{key}_reason": str(reason)}


def scaling_fits(groups: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """summary.json's fits over replicate groups: `scaling_fit` (least squares over exact onsets) and
    `censored_fit` (maximum likelihood), each null with its `_reason` when the groups cannot support it; `n`
    counts groups (the points), `runs` the runs in them."""
    fitted = fitted_groups(groups)
    observations = [OnsetObservation(**group["onset_observation"]) for group in fitted]
    params = [group["non_embedding_params"] for group in fitted]
    exact = [(group, o) for group, o in zip(fitted, observations) if o.censoring == "exact"]
    exact_groups, exact_observations = [group for group, _ in exact], [o for _, o in exact]
    return {
        **_fit_entry("scaling_fit", lambda: fit_power_law([g["non_embedding_params"] for g in exact_groups],
                                                          [o.tasks for o in exact_observations]),
                     exact_groups, exact_observations),
        **_fit_entry("censored_fit", lambda: fit_censored_power_law(params, observations), fitted, observations),
    }


def law_from_summary(path: str | Path) -> PowerLaw:
    """The `scaling_fit` of a report's `summary.json`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fit file {path} does not exist")
    try:
        summary = json.loads(path.read_text())
        fit = summary.get("scaling_fit")
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"fit file {path} is not a report's summary.json") from None
    if not fit:
        reason = summary.get("scaling_fit_reason") or "the report states no reason"
        raise ValueError(f"{path} has no scaling fit: {reason}")
    try:
        return law_of(fit)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: scaling_fit must hold numbers 'a' and 'b', got {fit!r}") from None
