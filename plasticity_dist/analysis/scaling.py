"""Scaling law of the onset: T = a · P^b (tasks against non-embedding parameters), fit in log space.

One fit, `fit_power_law`: maximum likelihood of log T = log a + b log P + ε, ε ~ N(0, σ²) over every continual
run (in a control study: every control run) without mitigations whose onset the probes bound, each run one observation of the interval its onset lies in
(interval-, left- or right-censored; `censoring.fit_interval_line`). A replicate seed is a run of its own:
σ is the scatter of single runs about the law. The fit needs bounded onsets at `MIN_SIZES` or more model sizes
and a b whose interval the data close on both sides, from probes no noisier than `MAX_PROBE_NOISE_PCT`;
otherwise it is refused with the reason.
`bench/law_recovery.py` measures its bias and coverage on simulated studies that follow a known law.
`STUDY_LAW` is the study's published fit, which states no interval of its own.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plasticity_dist.analysis.censoring import IntervalLine, NoFit, OnsetObservation, fit_interval_line

MIN_SIZES = 3
CONFIDENCE = 0.95
# Noisier probes (median σ over the runs, % of the AUC) make b no finding: bench/law_recovery.py, rises of 0.25-1 %
# of the AUC per cycle, 2 seeds: b biased by -0.08 to +0.05 at 1 % (coverage 0.96-1.00), by up to -0.24 at 2 %.
MAX_PROBE_NOISE_PCT = 1.5


@dataclass(frozen=True)
class PowerLaw:
    a: float
    b: float
    b_ci: tuple[float | None, float | None] | None = None
    n: int = 0  # how many runs it was fit on (0: given, not fit)
    sigma: float | None = None  # scatter of log T about the law
    log_params_centre: float | None = None  # mean log P of the runs fit
    log_onset_ci_at_centre: tuple[float, float] | None = None  # the law's log T there, its interval
    degrees_of_freedom: int | None = None
    params_range: tuple[float, float] | None = None  # the model sizes it was fit on

    @property
    def has_intervals(self) -> bool:
        return self.log_onset_ci_at_centre is not None

    def _line(self) -> IntervalLine:
        if not self.has_intervals:
            raise ValueError("the published law states no uncertainty: it has no interval")
        level = math.log(self.a) + self.b * self.log_params_centre
        return IntervalLine(self.log_params_centre, level, self.b, tuple(self.log_onset_ci_at_centre),
                            tuple(self.b_ci), self.sigma, self.degrees_of_freedom)

    def prediction_interval(self, params: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """Where a new run's onset at `params` lies with `confidence` (tasks): the law's own uncertainty there
        plus the runs' scatter about it."""
        low, high = self._line().prediction_interval(math.log(params), confidence)
        return math.exp(low), math.exp(high)

    def band(self, params: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """Confidence interval of the law itself at `params` (tasks)."""
        low, high = self._line().mean_interval(math.log(params), confidence)
        return math.exp(low), math.exp(high)


STUDY_LAW = PowerLaw(a=1.3e-5, b=0.8269)


def predict_onset(params: float, law: PowerLaw = STUDY_LAW) -> float:
    """Predicted onset in tasks for a model of `params` non-embedding parameters."""
    if params <= 0:
        raise ValueError(f"model size must be positive, got {params}")
    return law.a * params ** law.b


def _log_bounds(observations: Sequence[OnsetObservation]) -> tuple[np.ndarray, np.ndarray]:
    """Each observation's (low, high] in log tasks, −inf and +inf for open ends."""
    lows, highs = [], []
    for observation in observations:
        low, high = observation.bounds("tasks")
        lows.append(-math.inf if low <= 0 else math.log(low))
        highs.append(math.inf if high is None else math.log(high))
    return np.asarray(lows), np.asarray(highs)


def check_probe_noise(noise_pcts: Sequence[float]) -> None:
    """NoFit when the runs' median probe noise (σ of one AUC, % of the AUC) exceeds MAX_PROBE_NOISE_PCT: a
    rule on the data alone, so that refusing never depends on the b it would print."""
    if noise_pcts and statistics.median(noise_pcts) > MAX_PROBE_NOISE_PCT:
        raise NoFit(f"the probes are too noisy to place onsets for a fit: median σ {statistics.median(noise_pcts):.2f} % "
                    f"of the AUC over {len(noise_pcts)} runs, above {MAX_PROBE_NOISE_PCT:g} % (bench/law_recovery.py: "
                    "b comes out biased by up to -0.24 at 2 %); more validation tokens per eval point (probe.eval_tokens) "
                    "lower the part of it that is evaluation noise, and in a control study more probe permutations "
                    "(curriculum.control.probe_permutations) the part that is the probe permutation's")


def fit_power_law(params: Sequence[float], observations: Sequence[OnsetObservation],
                  confidence: float = CONFIDENCE) -> PowerLaw:
    """The law through the runs' onset intervals (see the module docstring); NoFit where the data cannot
    support it."""
    if len(params) != len(observations) or min(params, default=1) <= 0:
        raise ValueError(f"scaling fit needs one onset observation per positive size, got sizes {list(params)}")
    bounded = sorted({size for size, o in zip(params, observations) if o.censoring != "right"})
    if len(bounded) < MIN_SIZES:
        raise NoFit(f"onsets bounded above at {len(bounded)} model size{'s' * (len(bounded) != 1)}; a fit needs "
                    f"{MIN_SIZES} or more")
    line = fit_interval_line(np.log(np.asarray(params, float)), *_log_bounds(observations), confidence)
    if None in line.slope_ci or None in line.level_ci:
        raise NoFit(f"b is not bounded by the data: the {confidence:.0%} intervals stay open (b "
                    f"({line.slope_ci[0]}, {line.slope_ci[1]}) around {line.slope:.3f})")
    return PowerLaw(a=math.exp(line.intercept), b=line.slope, b_ci=line.slope_ci, n=len(params),
                    sigma=line.sigma, log_params_centre=line.centre, log_onset_ci_at_centre=line.level_ci,
                    degrees_of_freedom=line.degrees_of_freedom, params_range=(min(params), max(params)))


def law_of(fit: dict[str, Any]) -> PowerLaw:
    """A fit as summary.json stores it, back as a `PowerLaw`."""
    fields = {key: fit.get(key) for key in ("b_ci", "sigma", "log_params_centre", "log_onset_ci_at_centre",
                                            "degrees_of_freedom", "params_range")}
    return PowerLaw(a=float(fit["a"]), b=float(fit["b"]), n=fit.get("n", 0), **fields)


def law_problem(runs: Sequence[dict[str, Any]]) -> str:
    """The problem whose onsets the law is fit over: continual (the study's) where there are such runs, else the
    control problem's (its tasks are one size too); never both at once, nor stationary runs (onsets in tokens)."""
    return "continual" if any(run["problem"] == "continual" for run in runs) else "control"


def law_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary's runs the law is about: those of `law_problem`, without mitigations."""
    problem = law_problem(runs)
    return [run for run in runs if run["problem"] == problem and not run["mitigations"]]


def fitted_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The law's runs whose onset the probes bound (an observation): the ones it is fit on."""
    return [run for run in law_runs(runs) if run["onset_observation"] is not None]


def scaling_fits(runs: Sequence[dict[str, Any]], groups: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """summary.json's `scaling_fit` over the runs (null with its `scaling_fit_reason` when they cannot support
    it): n runs in `groups` replicate groups at `sizes` sizes, with the censoring counts."""
    fitted = fitted_runs(runs)
    observations = [OnsetObservation.from_json(run["onset_observation"]) for run in fitted]
    params = [run["non_embedding_params"] for run in fitted]
    noise_pcts = [run["noise"]["auc"]["sigma_pct_change"] / math.sqrt(2) for run in law_runs(runs)
                  if run["noise"]["auc"]]
    try:
        check_probe_noise(noise_pcts)
        law = fit_power_law(params, observations)
    except NoFit as reason:
        return {"scaling_fit": None, "scaling_fit_reason": str(reason)}
    names = {run["run"] for run in fitted}
    counts = Counter(observation.censoring for observation in observations)
    record = {**asdict(law), "runs": len(fitted), "confidence": CONFIDENCE,
              "groups": sum(any(name in names for name in group["runs"]) for group in groups),
              "sizes": len(set(params)), **{censoring: counts[censoring] for censoring in ("interval", "left", "right")},
              "unjudged_runs": len(law_runs(runs)) - len(fitted)}
    return {"scaling_fit": record, "scaling_fit_reason": None}


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
