"""Onset of plasticity loss: the task count after which probe AUC starts a sustained rise.

The rule, over the post-cycle probes in training order (the cycle-0 baseline is not part of it):
1. Smooth the AUC series with a centred moving average of 3 probes; the first and last probe keep their
   own value (a shorter window there would pull a curved series toward its end).
2. The candidate is the last probe where the smoothed curve is at its minimum (the last, so that a flat
   stretch followed by a rise has its onset at the end of the stretch, not its start).
3. Noise σ is estimated from the raw AUCs as the root mean square of their second differences over √6 (a
   second difference of independent noise has variance 6σ²; a smooth trend barely moves it, and a lone
   spike only inflates it, which makes the rule more conservative). The threshold is k·σ, and never less
   than `min_rise` × the minimum (so that noise-free curves need a real rise).
4. The rise is sustained when at least two probes follow the candidate and the last two both exceed the
   smoothed minimum by more than the threshold. Then the onset is the candidate's `tasks_trained`;
   otherwise (flat, still falling, a lone spike, or fewer than 4 probes) there is no onset yet: None.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

MIN_PROBES = 4
MIN_RISE = 1e-3
_RULE = (
    "the onset is the task count of the last post-cycle probe at the minimum of the AUC curve smoothed by a "
    "moving average of 3 probes (the first and last probe as they are), provided the last two probes both lie "
    "more than max(k·σ, {min_rise:.1%} of the minimum) above that minimum, with k = {k:g} and "
    "σ = RMS(second differences of AUC)/√6 the probe noise; otherwise (flat, still falling, a lone spike, "
    "fewer than {min_probes} probes) there is no onset yet"
)


def describe_onset_rule(k: float) -> str:
    """The rule in one sentence, for the report."""
    return _RULE.format(k=k, min_rise=MIN_RISE, min_probes=MIN_PROBES)


def smooth(values: Sequence[float]) -> list[float]:
    """Centred moving average of 3; the end values stay as they are."""
    inner = [statistics.fmean(values[i - 1:i + 2]) for i in range(1, len(values) - 1)]
    return [values[0], *inner, values[-1]] if len(values) > 1 else list(values)


def noise_level(values: Sequence[float]) -> float:
    """Standard deviation of independent noise on a smooth curve, from second differences (0 for < 3 values)."""
    second_differences = [a - 2 * b + c for a, b, c in zip(values, values[1:], values[2:])]
    if not second_differences:
        return 0.0
    return math.sqrt(statistics.fmean(d * d for d in second_differences) / 6)


def find_onset(tasks: Sequence[int], aucs: Sequence[float], k: float = 3.0, min_rise: float = MIN_RISE) -> int | None:
    """Tasks trained before AUC starts a sustained rise (see the module docstring), or None."""
    if len(tasks) != len(aucs):
        raise ValueError(f"onset needs one AUC per probe: {len(tasks)} task counts, {len(aucs)} AUCs")
    if any(later <= earlier for earlier, later in zip(tasks, tasks[1:])):
        raise ValueError(f"probes must be in training order with increasing task counts, got {list(tasks)}")
    if len(aucs) < MIN_PROBES:
        return None
    smoothed = smooth(aucs)
    minimum = min(smoothed)
    candidate = max(i for i, value in enumerate(smoothed) if value == minimum)
    threshold = max(k * noise_level(aucs), min_rise * abs(minimum))
    if candidate > len(aucs) - 3 or not all(auc - minimum > threshold for auc in aucs[-2:]):
        return None
    return int(tasks[candidate])
