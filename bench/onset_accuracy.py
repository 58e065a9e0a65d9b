"""Accuracy of the onset rule on simulated probe AUCs with known onsets, against the old rule (the minimum of a
3-probe moving average, ends unsmoothed) as the baseline. Targets: >= 90% of estimates within one cycle
(8 tasks) at noise sigma = 0.1% of the AUC, false alarms <= 5% on flat curves, no bias on a noise-free kink.

A curve has probes every 8 tasks. It starts at AUC 1, dips by transfer (1 - depth * (1 - exp(-tasks / scale)),
depth 0.5-2%, scale 8-40 tasks) until its onset, drawn uniformly over the task counts with 2 probes before and
3 after it, then rises linearly by 0.25-1% per cycle. Noise is Gaussian, sigma 0.05-0.5% of the AUC, over 8,
15 or 30 probes. Bias is the mean of estimate - true onset over the curves with an estimate; "within one
cycle" counts a missing estimate as a miss. Flat curves are 1 + noise; a dip without a rise is the transfer
dip alone. A straight rise from the first probe should be put at the first probe (left-censored). The 95%
onset interval's coverage counts intervals that hold the true onset. Deterministic from --seed; about a
minute on one core.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence

import numpy as np

from plasticity_dist.analysis.onset import find_onset, onset_interval

TASKS_PER_CYCLE = 8
NOISE_PCT = (0.05, 0.1, 0.2, 0.5)
PROBE_COUNTS = (8, 15, 30)
HEADLINE_NOISE_PCT = 0.1
Rule = Callable[[Sequence[int], Sequence[float]], "int | None"]


def noise_level(values: Sequence[float]) -> float:
    """The old rule's noise: standard deviation from second differences (independent noise gives them 6σ²)."""
    second_differences = [a - 2 * b + c for a, b, c in zip(values, values[1:], values[2:])]
    return (statistics.fmean(d * d for d in second_differences) / 6) ** 0.5


def old_rule(tasks: Sequence[int], aucs: Sequence[float], k: float = 3.0, min_rise: float = 1e-3) -> int | None:
    """The rule before the hinge fit: last minimum of a centred 3-probe moving average (ends as they are),
    provided the last two probes exceed it by max(k·σ, min_rise × minimum)."""
    if len(aucs) < 4:
        return None
    smoothed = [aucs[0], *(statistics.fmean(aucs[i - 1:i + 2]) for i in range(1, len(aucs) - 1)), aucs[-1]]
    minimum = min(smoothed)
    candidate = max(i for i, value in enumerate(smoothed) if value == minimum)
    threshold = max(k * noise_level(aucs), min_rise * abs(minimum))
    if candidate > len(aucs) - 3 or not all(auc - minimum > threshold for auc in aucs[-2:]):
        return None
    return int(tasks[candidate])


def probe_tasks(probes: int) -> np.ndarray:
    return TASKS_PER_CYCLE * np.arange(1, probes + 1)


def dip_then_rise(tasks: np.ndarray, onset: float, rng: np.random.Generator, rise: bool = True) -> np.ndarray:
    """Noise-free AUC: a transfer dip until `onset`, then a linear rise (none when `rise` is False)."""
    depth, scale = rng.uniform(0.005, 0.02), rng.uniform(8, 40)
    slope = rng.uniform(0.0025, 0.01) / TASKS_PER_CYCLE if rise else 0.0
    dip = 1 - depth * (1 - np.exp(-np.minimum(tasks, onset) / scale))
    return dip + slope * np.maximum(tasks - onset, 0)


def draw_onset(probes: int, rng: np.random.Generator) -> float:
    return rng.uniform(2 * TASKS_PER_CYCLE, (probes - 3) * TASKS_PER_CYCLE)


def accuracy(rule: Rule, probes: int, noise_pct: float, curves: int, seed: int) -> tuple[float, float]:
    """Bias (tasks) and share within one cycle of the rule on `curves` noisy dip-then-rise curves."""
    rng, tasks = np.random.default_rng(seed), probe_tasks(probes)
    errors, within = [], 0
    for _ in range(curves):
        onset = draw_onset(probes, rng)
        aucs = dip_then_rise(tasks, onset, rng) + rng.normal(0, noise_pct / 100, probes)
        estimate = rule(list(tasks), list(aucs))
        if estimate is not None:
            errors.append(estimate - onset)
            within += abs(estimate - onset) <= TASKS_PER_CYCLE
    return (statistics.fmean(errors) if errors else float("nan")), within / curves


def false_alarms(rule: Rule, probes: int, curves: int, seed: int, with_dip: bool) -> float:
    """Share of curves without a rise (flat, or the transfer dip alone) that get an onset, at sigma 0.1%."""
    rng, tasks = np.random.default_rng(seed), probe_tasks(probes)
    base = (lambda: dip_then_rise(tasks, float(tasks[-1]), rng, rise=False)) if with_dip else (lambda: np.ones(probes))
    noise = HEADLINE_NOISE_PCT / 100
    return statistics.fmean(rule(list(tasks), list(base() + rng.normal(0, noise, probes))) is not None
                            for _ in range(curves))


def noise_free_kink_errors(rule: Rule, probes: int, seed: int) -> list[float]:
    """Estimate - onset on noise-free curves, one per probe that can be an onset (kink on the probe)."""
    rng, tasks = np.random.default_rng(seed), probe_tasks(probes)
    onsets = tasks[1:-3]
    estimates = [rule(list(tasks), list(dip_then_rise(tasks, float(onset), rng))) for onset in onsets]
    return [np.inf if estimate is None else estimate - onset for estimate, onset in zip(estimates, onsets)]


def interval_coverage(probes: int, curves: int, seed: int) -> tuple[float, float]:
    """Share of 95% onset intervals that hold the true onset, and their mean width in cycles, at sigma 0.1%."""
    rng, tasks = np.random.default_rng(seed), probe_tasks(probes)
    covered, widths = [], []
    for _ in range(curves):
        onset = draw_onset(probes, rng)
        aucs = dip_then_rise(tasks, onset, rng) + rng.normal(0, HEADLINE_NOISE_PCT / 100, probes)
        interval = onset_interval(list(tasks), list(aucs), resamples=400)
        if interval is not None:
            low, high = interval
            covered.append(low <= onset <= high)
            widths.append((high - low) / TASKS_PER_CYCLE)
    return statistics.fmean(covered), statistics.fmean(widths)


def left_censored_share(rule: Rule, probes: int, curves: int, seed: int) -> float:
    """Share of straight rises from the first probe (0.25-1% per cycle, sigma 0.1%) put at the first probe."""
    rng, tasks = np.random.default_rng(seed), probe_tasks(probes)
    estimates = [rule(list(tasks), list(1 + rng.uniform(0.0025, 0.01) * np.arange(probes)
                                        + rng.normal(0, HEADLINE_NOISE_PCT / 100, probes)))
                 for _ in range(curves)]
    return statistics.fmean(estimate == tasks[0] for estimate in estimates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curves", type=int, default=400, help="noisy curves per noise level and probe count")
    args = parser.parse_args()
    rules = {"old": old_rule, "new": find_onset}
    print(f"curves per cell: {args.curves}, seed {args.seed}, probes every {TASKS_PER_CYCLE} tasks")
    headline: dict[str, list[float]] = {name: [] for name in rules}
    for probes in PROBE_COUNTS:
        for noise_pct in NOISE_PCT:
            for name, rule in rules.items():
                bias, within = accuracy(rule, probes, noise_pct, args.curves, args.seed)
                print(f"{name}_probes_{probes}_sigma_{noise_pct}pct_bias_tasks: {bias:+.2f}")
                print(f"{name}_probes_{probes}_sigma_{noise_pct}pct_within_one_cycle: {within:.3f}")
                if noise_pct == HEADLINE_NOISE_PCT:
                    headline[name].append(within)
    for name, rule in rules.items():
        for probes in PROBE_COUNTS:
            for shape, with_dip in (("flat", False), ("dip_only", True)):
                rate = false_alarms(rule, probes, 4 * args.curves, args.seed, with_dip)
                print(f"{name}_probes_{probes}_false_alarms_{shape}: {rate:.3f}")
        errors = [error for probes in PROBE_COUNTS for error in noise_free_kink_errors(rule, probes, args.seed)]
        print(f"{name}_noise_free_kink_mean_error_tasks: {statistics.fmean(errors):+.2f}")
        print(f"{name}_noise_free_kink_max_abs_error_tasks: {max(abs(error) for error in errors):.2f}")
        for probes in PROBE_COUNTS:
            share = left_censored_share(rule, probes, args.curves, args.seed)
            print(f"{name}_probes_{probes}_straight_rise_at_first_probe: {share:.3f}")
    for probes in PROBE_COUNTS:
        coverage, width = interval_coverage(probes, args.curves // 4, args.seed)
        print(f"new_probes_{probes}_interval95_coverage: {coverage:.3f} (mean width {width:.2f} cycles)")
    old, new = min(headline["old"]), min(headline["new"])
    print(f"worst_within_one_cycle_sigma_{HEADLINE_NOISE_PCT}pct: old {old:.3f}, new {new:.3f} (target >= 0.90)")
    print(f"worst_within_one_cycle_new_vs_old_ratio: {new / old:.2f}")


if __name__ == "__main__":
    main()
