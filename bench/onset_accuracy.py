"""Accuracy of the onset estimator on simulated probe AUCs with known onsets, per curve shape and noise level:
the 95 % interval's coverage and width, the best break's bias (log tasks), how often no onset is found, the
false-onset rate on straight rises from before the first probe (an inner onset where the truth is "at or before
the first probe", target <= 5 %) and the false-alarm rate on flat curves.

Curves come from bench/law_recovery.py (`curve`: exponential dip, V, flat bottom, straight rise, smooth U; a rise
of 0.25-1 % of the AUC per cycle of 8 tasks); an onset is drawn log-uniformly between the second probe and the
probe 4 before the last, on the once-per-cycle grid (30 probes) and the early grid (every task of the first 2
cycles, then every cycle). Noise: Gaussian, sigma in % of the AUC.

`--baseline-ref REF` also runs the estimator of a past commit (its `find_onset` and `onset_interval`) on the same
curves, through `bench/past_package.py`. Deterministic from --seed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # BLAS threads on 2 cores slow the many small fits five-fold
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

from law_recovery import SHAPES, curve, probe_tasks  # noqa: E402
from past_package import run_in_past_package  # noqa: E402

NOISE_PCT = (0.1, 0.2, 0.5, 1.0, 2.0)
SCHEDULES = ("cycle", "early")


def new_estimate(tasks: list[float], aucs: list[float]) -> tuple[float | None, float | None, float | None]:
    """(best break, low, high) of today's estimator; low None when it finds no onset."""
    from plasticity_dist.analysis.onset import estimate_onset

    estimate = estimate_onset(tasks, aucs)
    if estimate.censoring not in ("interval", "left"):
        return None, None, None
    return estimate.onset, estimate.low, estimate.high


def old_estimate(tasks: list[float], aucs: list[float]) -> tuple[float | None, float | None, float | None]:
    """(onset, low, high) of the estimator before issue 24 (`find_onset`, `onset_interval`)."""
    from plasticity_dist.analysis.onset import find_onset, onset_interval

    onset = find_onset(tasks, aucs)
    if onset is None:
        return None, None, None
    low, high = onset_interval(tasks, aucs, resamples=400)
    return (None if onset <= tasks[0] else float(onset)), (0.0 if onset <= tasks[0] else low), high


def evaluate(estimate, curves: int, seed: int) -> list[dict]:
    rows = []
    for schedule in SCHEDULES:
        tasks = probe_tasks(schedule)
        for shape in SHAPES:
            for noise_pct in NOISE_PCT:
                rng = np.random.default_rng(seed)
                covered, widths, errors, found = [], [], [], 0
                for _ in range(curves):
                    onset = math.exp(rng.uniform(math.log(tasks[1]), math.log(tasks[-5])))
                    aucs = curve(tasks, onset, shape, rng) + rng.normal(0, noise_pct / 100, len(tasks))
                    best, low, high = estimate(list(tasks), list(aucs))
                    if low is None:
                        continue
                    found += 1
                    covered.append(low < onset <= (math.inf if high is None else high))
                    if high is not None and low > 0:
                        widths.append(math.log(high / low))
                    if best is not None:
                        errors.append(math.log(best / onset))
                rows.append({"schedule": schedule, "shape": shape, "noise_pct": noise_pct, "found": found / curves,
                             "coverage": statistics.fmean(covered) if covered else math.nan,
                             "median_log_width": statistics.median(widths) if widths else math.nan,
                             "median_log_error": statistics.median(errors) if errors else math.nan})
    return rows


def false_onsets(estimate, curves: int, seed: int) -> list[dict]:
    """Straight rises starting before the first probe (an inner onset is false) and flat curves (any onset is)."""
    rows = []
    for schedule in SCHEDULES:
        tasks = probe_tasks(schedule)
        for noise_pct in NOISE_PCT:
            rng = np.random.default_rng(seed)
            inner = alarms = 0
            for _ in range(curves):
                rise = curve(tasks, rng.uniform(0, tasks[0]), "straight", rng) + rng.normal(0, noise_pct / 100, len(tasks))
                best, low, _ = estimate(list(tasks), list(rise))
                inner += low is not None and low > 0
                flat = 1 + rng.normal(0, noise_pct / 100, len(tasks))
                alarms += estimate(list(tasks), list(flat))[1] is not None
            rows.append({"schedule": schedule, "noise_pct": noise_pct, "straight_rise_inner_onset": inner / curves,
                         "flat_false_alarm": alarms / curves})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curves", type=int, default=200, help="curves per shape, noise level and grid")
    parser.add_argument("--baseline-ref", help="also run the estimator of this git commit (e.g. cf5dc82)")
    parser.add_argument("--estimator", choices=("new", "old"), default="new", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    estimate = new_estimate if args.estimator == "new" else old_estimate
    results = {args.estimator: (evaluate(estimate, args.curves, args.seed),
                                false_onsets(estimate, args.curves, args.seed))}
    if args.json:
        print(json.dumps(results))
        return
    if args.baseline_ref:
        results |= run_in_past_package(args.baseline_ref, __file__, ["--estimator", "old", "--json",
                                                                     "--curves", str(args.curves),
                                                                     "--seed", str(args.seed)])
    print(f"curves per cell: {args.curves}, seed {args.seed}")
    for name, (rows, false_rows) in results.items():
        for row in rows:
            prefix = f"{name}_{row['schedule']}_{row['shape']}_sigma_{row['noise_pct']}pct"
            print(f"{prefix}_found: {row['found']:.3f}")
            print(f"{prefix}_interval95_coverage: {row['coverage']:.3f}")
            print(f"{prefix}_median_log_width: {row['median_log_width']:.3f}")
            print(f"{prefix}_median_log_error: {row['median_log_error']:+.3f}")
        for row in false_rows:
            prefix = f"{name}_{row['schedule']}_sigma_{row['noise_pct']}pct"
            print(f"{prefix}_straight_rise_inner_onset: {row['straight_rise_inner_onset']:.3f} (target <= 0.05)")
            print(f"{prefix}_flat_false_alarm: {row['flat_false_alarm']:.3f}")
    for name, (rows, false_rows) in results.items():
        coverages = [row["coverage"] for row in rows if row["noise_pct"] <= 0.5 and not math.isnan(row["coverage"])]
        print(f"{name}_coverage_range_noise_le_0.5pct: {min(coverages):.3f}-{max(coverages):.3f}")
        print(f"{name}_worst_straight_rise_inner_onset: {max(r['straight_rise_inner_onset'] for r in false_rows):.3f}")
        print(f"{name}_worst_flat_false_alarm: {max(r['flat_false_alarm'] for r in false_rows):.3f}")


if __name__ == "__main__":
    sys.exit(main())
