"""Scaling law of the onset: T = a · P^b (tasks against non-embedding parameters), fit in log space.

`fit_power_law` solves log T = log a + b log P by least squares across runs and bootstraps a confidence
interval by resampling runs with replacement. `STUDY_LAW` is the study's published fit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PowerLaw:
    a: float
    b: float
    a_ci: tuple[float, float] | None = None
    b_ci: tuple[float, float] | None = None
    runs: int = 0  # how many runs it was fit on (0: given, not fit)


STUDY_LAW = PowerLaw(a=1.3e-5, b=0.8269)
BOOTSTRAP_RESAMPLES = 1000


def _least_squares(log_params: np.ndarray, log_onsets: np.ndarray) -> tuple[float, float]:
    """(log a, b) of the line through the points."""
    b, log_a = np.polyfit(log_params, log_onsets, 1)
    return float(log_a), float(b)


def fit_power_law(params: Sequence[float], onsets: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                  confidence: float = 0.95, seed: int = 0) -> PowerLaw:
    """Least-squares fit of log T = log a + b log P, with percentile bootstrap intervals over runs."""
    if len(params) != len(onsets):
        raise ValueError(f"scaling fit needs one onset per run: {len(params)} sizes, {len(onsets)} onsets")
    if min(params, default=0) <= 0 or min(onsets, default=0) <= 0:
        raise ValueError(f"scaling fit needs positive sizes and onsets, got sizes {list(params)}, onsets {list(onsets)}")
    log_params, log_onsets = np.log(np.asarray(params, float)), np.log(np.asarray(onsets, float))
    if len(np.unique(log_params)) < 2:
        raise ValueError(f"scaling fit needs runs of at least 2 model sizes, got sizes {sorted(set(params))}")
    log_a, b = _least_squares(log_params, log_onsets)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        picked = rng.integers(0, len(log_params), len(log_params))
        if len(np.unique(log_params[picked])) >= 2:  # a resample of one size has no slope
            draws.append(_least_squares(log_params[picked], log_onsets[picked]))
    tail = 100 * (1 - confidence) / 2
    (log_a_lo, b_lo), (log_a_hi, b_hi) = np.percentile(np.array(draws), [tail, 100 - tail], axis=0)
    return PowerLaw(a=float(np.exp(log_a)), b=b, a_ci=(float(np.exp(log_a_lo)), float(np.exp(log_a_hi))),
                    b_ci=(float(b_lo), float(b_hi)), runs=len(log_params))


def predict_onset(params: float, law: PowerLaw = STUDY_LAW) -> float:
    """Predicted onset in tasks for a model of `params` non-embedding parameters."""
    if params <= 0:
        raise ValueError(f"model size must be positive, got {params}")
    return law.a * params ** law.b


def law_from_summary(path: str | Path) -> PowerLaw:
    """The `scaling_fit` of a report's `summary.json`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fit file {path} does not exist")
    try:
        fit = json.loads(path.read_text()).get("scaling_fit")
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"fit file {path} is not a report's summary.json") from None
    if not fit:
        raise ValueError(f"{path} has no scaling fit (it needs onsets from runs of at least 2 model sizes)")
    try:
        return PowerLaw(a=float(fit["a"]), b=float(fit["b"]))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: scaling_fit must hold numbers 'a' and 'b', got {fit!r}") from None
