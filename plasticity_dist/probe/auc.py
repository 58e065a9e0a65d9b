"""AUC of a probe's validation curve: the trapezoid area under it divided by its span, so that it reads as a
mean validation loss (a constant curve gives that constant), over the axis the eval grid (`probe.eval_spacing`)
is even on, so that every eval interval weighs alike:

- `linear` (the study's): over training tokens (`trapezoid_linear_tokens`);
- `log`: over log training tokens (`trapezoid_log_tokens`), step 0 (no log) placed one mean log interval
  before the point after it, so that it weighs half an interval as on the linear grid (1/(2(n − 1)) at n even
  points: 5 % at 11). Over linear tokens the last two of 11 log-spaced points would weigh about 75 %.

A probe result records its rule (`auc_rule`). The AUC does not make probes with different budgets or eval
points comparable: a longer probe reaches lower losses and so has a lower mean, and the eval grid sets each
loss's weight. Compare only probes made under one probe config (the report refuses to mix them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LINEAR_AUC_RULE = "trapezoid_linear_tokens"  # the study's, and that of every result from before `auc_rule`
AUC_RULES = {"linear": LINEAR_AUC_RULE, "log": "trapezoid_log_tokens"}  # eval spacing -> its AUC rule


def spacing_of_rule(rule: str) -> str:
    """The eval spacing whose AUC rule is `rule` (as a probe result records it)."""
    spacings = {rule: spacing for spacing, rule in AUC_RULES.items()}
    if rule not in spacings:
        raise ValueError(f"unknown AUC rule {rule!r}; known: {', '.join(spacings)}")
    return spacings[rule]


def _positions(tokens: Sequence[float], spacing: str) -> list[float]:
    """Where the eval points lie on the axis the AUC is taken over."""
    if spacing == "linear":
        return list(tokens)
    if spacing != "log":
        raise ValueError(f"eval spacing must be linear or log, got {spacing!r}")
    if tokens[0] < 0:
        raise ValueError(f"a log-spaced AUC needs token counts of 0 or more, got {list(tokens)}")
    logs = [math.log(count) for count in tokens if count > 0]  # all but a first point at 0 tokens
    if len(logs) == len(tokens):
        return logs
    interval = (logs[-1] - logs[0]) / (len(logs) - 1) if len(logs) > 1 else 1.0  # 2 points: any width is the same
    return [logs[0] - interval, *logs]


def curve_auc(tokens: Sequence[float], losses: Sequence[float], spacing: str = "linear") -> float:
    """Mean validation loss over the probe: the trapezoid area of `losses` over the eval points' positions on
    `spacing`'s axis (tokens or log tokens) / their span."""
    if len(tokens) != len(losses):
        raise ValueError(f"AUC needs one loss per eval point: {len(tokens)} token counts, {len(losses)} losses")
    if len(tokens) < 2:
        raise ValueError(f"AUC needs at least 2 eval points, got {len(tokens)}")
    if any(later <= earlier for earlier, later in zip(tokens, tokens[1:])):
        raise ValueError(f"eval points must be strictly increasing in tokens, got {list(tokens)}")
    if not all(math.isfinite(loss) for loss in losses):
        raise ValueError(f"validation losses must be finite, got {list(losses)}")
    positions = _positions(tokens, spacing)
    area = sum((x1 - x0) * (l0 + l1) / 2 for x0, x1, l0, l1 in zip(positions, positions[1:], losses, losses[1:]))
    return area / (positions[-1] - positions[0])


def auc_without_step0(tokens: Sequence[float], losses: Sequence[float], spacing: str = "linear",
                      from_point: int = 0) -> float | None:
    """The AUC of the curve after its step-0 point, the loss before any probe training (which the AUC weights by
    half an eval interval, 5 % at 11 points), from eval point `from_point` on where that is later (the probe's
    `auc_from_point`); None with fewer than 2 points left."""
    start = max(1, from_point)
    if len(tokens) < start + 2:
        return None
    return curve_auc(tokens[start:], losses[start:], spacing)


def auc_pct_change(auc: float, reference: float) -> float:
    """% change of an AUC against the reference probe's: positive = worse probing = less plasticity."""
    if reference <= 0:
        raise ValueError(f"reference AUC must be positive, got {reference}")
    return 100 * (auc - reference) / reference
