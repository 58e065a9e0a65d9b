"""Probe AUC and its % change on hand-made curves, and the published law (the onset: test_onset.py; the fit:
test_scaling.py)."""

from __future__ import annotations

import pytest

from plasticity_dist.analysis.scaling import STUDY_LAW, predict_onset
from plasticity_dist.probe.auc import auc_pct_change, curve_auc


def test_auc_of_a_constant_curve_is_that_constant_at_uneven_eval_points():
    assert curve_auc([0, 10, 15, 100], [2.5] * 4) == pytest.approx(2.5)


def test_auc_is_the_trapezoid_area_over_the_token_span():
    # trapezoids: 1000 * (4 + 2) / 2 + 3000 * (2 + 1) / 2 = 7500 over a span of 4000 tokens
    assert curve_auc([0, 1000, 4000], [4.0, 2.0, 1.0]) == pytest.approx(1.875)
    # the span, not the start, divides: same curve shifted by 500 tokens
    assert curve_auc([500, 1500, 4500], [4.0, 2.0, 1.0]) == pytest.approx(1.875)


@pytest.mark.parametrize("tokens, losses, message", [
    ([0], [1.0], "at least 2"),
    ([0, 1], [1.0], "one loss per eval point"),
    ([0, 2, 2], [1.0, 1.0, 1.0], "strictly increasing"),
    ([0, 1], [1.0, float("nan")], "finite"),
])
def test_auc_refuses_a_bad_curve(tokens, losses, message):
    with pytest.raises(ValueError, match=message):
        curve_auc(tokens, losses)


def test_auc_pct_change_is_positive_when_probing_got_worse():
    assert auc_pct_change(3.3, 3.0) == pytest.approx(10.0)
    assert auc_pct_change(2.7, 3.0) == pytest.approx(-10.0)
    assert auc_pct_change(3.0, 3.0) == 0.0


def test_published_law_puts_a_1b_model_at_about_360_tasks():
    tasks = predict_onset(1e9, STUDY_LAW)
    assert tasks == pytest.approx(360, abs=1)
    assert tasks * 5e9 == pytest.approx(1.8e12, rel=0.01)
