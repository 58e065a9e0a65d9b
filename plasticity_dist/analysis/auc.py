"""AUC of a probe's validation curve: the trapezoid area over training tokens, divided by the token span.

Dividing by the span makes the AUC read as a mean validation loss (a constant curve gives that constant).
It does not make probes with different budgets or eval points comparable: a longer probe reaches lower
losses and so has a lower mean, and the eval grid sets each loss's weight. Compare only probes made under
one probe config (the report refuses to mix them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from plasticity_dist.probe.results import auc_pct_change  # noqa: F401  (the report's AUC helpers in one place)


def curve_auc(tokens: Sequence[float], losses: Sequence[float]) -> float:
    """Mean validation loss over the probe: trapezoid area of `losses` over `tokens` / token span."""
    if len(tokens) != len(losses):
        raise ValueError(f"AUC needs one loss per eval point: {len(tokens)} token counts, {len(losses)} losses")
    if len(tokens) < 2:
        raise ValueError(f"AUC needs at least 2 eval points, got {len(tokens)}")
    if any(later <= earlier for earlier, later in zip(tokens, tokens[1:])):
        raise ValueError(f"eval points must be strictly increasing in tokens, got {list(tokens)}")
    if not all(math.isfinite(loss) for loss in losses):
        raise ValueError(f"validation losses must be finite, got {list(losses)}")
    area = sum((t1 - t0) * (l0 + l1) / 2 for t0, t1, l0, l1 in zip(tokens, tokens[1:], losses, losses[1:]))
    return area / (tokens[-1] - tokens[0])


def auc_without_step0(tokens: Sequence[float], losses: Sequence[float]) -> float | None:
    """The AUC of the curve after its step-0 point, the loss before any probe training (which the study's
    AUC weights by half its first interval, 5 % at 11 linear points); None with fewer than 2 points after it."""
    if len(tokens) < 3:
        return None
    return curve_auc(tokens[1:], losses[1:])
