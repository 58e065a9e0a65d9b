"""Onset of plasticity loss: the task count after which probe AUC starts a sustained rise.

The rule, over the post-cycle probes in training order (the cycle-0 baseline is not part of it):
1. Smooth the AUC series with a centred moving average of 3 probes (2 at either end).
2. The candidate is the last probe where the smoothed curve is at its minimum (the last, so that a flat
   stretch followed by a rise has its onset where the rise starts).
3. Noise is the robust standard deviation of the raw AUCs: 1.4826 · MAD of their second differences,
   divided by √6 (a second difference of independent noise has variance 6σ²; a smooth trend barely moves
   it). The threshold is k · noise, and never less than `min_rise` × the minimum (for noise-free curves).
4. The rise is sustained when at least two probes follow the candidate and the last two both exceed the
   smoothed minimum by more than the threshold. Then the onset is the candidate's `tasks_trained`;
   otherwise (flat, still falling, a lone spike, or fewer than 4 probes) there is no onset yet: None.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

MIN_PROBES = 4
ONSET_RULE = (
    "the onset is the task count of the last post-cycle probe at the minimum of the AUC curve smoothed by a "
    "moving average of 3 probes, provided the last two probes both lie more than max(k·σ, {min_rise:.1%} of the "
    "minimum) above that minimum, with k = {k:g} and σ = 1.4826·MAD(second differences of AUC)/√6 the probe "
    "noise; otherwise (flat, still falling, a lone spike, fewer than {min_probes} probes) there is no onset yet"
)


def smooth(values: Sequence[float], window: int = 3) -> list[float]:
    """Centred moving average; the window shrinks at the ends instead of padding."""
    half = window // 2
    return [statistics.fmean(values[max(0, i - half):i + half + 1]) for i in range(len(values))]


def noise_level(values: Sequence[float]) -> float:
    """Robust standard deviation of independent noise on a smooth curve (0 for fewer than 3 values)."""
    second_differences = [a - 2 * b + c for a, b, c in zip(values, values[1:], values[2:])]
    if not second_differences:
        return 0.0
    centre = statistics.median(second_differences)
    mad = statistics.median(abs(d - centre) for d in second_differences)
    return 1.4826 * mad / 6 ** 0.5


def find_onset(tasks: Sequence[int], aucs: Sequence[float], k: float = 3.0, min_rise: float = 1e-3) -> int | None:
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
