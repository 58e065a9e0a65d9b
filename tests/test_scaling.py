"""The scaling fit of the onset: refused below 3 sizes, t-intervals by hand, censored onsets in the report, the
plot and the maximum-likelihood fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fabricated_runs import make_run
from plasticity_dist.analysis.censoring import NoFit, OnsetObservation
from plasticity_dist.analysis.plots import scaling_figure
from plasticity_dist.analysis.scaling import fit_censored_power_law, fit_power_law
from plasticity_dist.cli import main

T_QUANTILE_1_DF = 12.706204736  # Student t, 97.5 % quantile, 1 degree of freedom (from tables)


def u_shaped(best_cycle: int):
    return lambda cycle: 3.0 + 0.05 * (cycle - best_cycle) ** 2


def rising_from_the_first_probe(cycle: int) -> float:
    return 3.0 + 0.02 * (cycle - 1) ** 2


def report_on(runs, out):
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    return (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def censored_report(tmp_path_factory):
    """Exact onsets at 3 sizes (4, 8 and 10 tasks), a 250K run without an onset and one rising from its first
    probe (at another learning rate: runs that differ only in seeds would be one replicate group)."""
    root = tmp_path_factory.mktemp("runs")
    runs = [make_run(root, "100K", cycles=6), make_run(root, "600K", cycles=8),
            make_run(root, "5M", cycles=8, aucs=u_shaped(5)),
            make_run(root, "250K", cycles=6, name="flat", aucs=lambda cycle: 3.0, overrides=["optimizer.lr=5e-4"]),
            make_run(root, "250K", cycles=6, name="rising", aucs=rising_from_the_first_probe)]
    out = root / "report"
    return out, *report_on(runs, out)


def test_a_two_size_fit_is_refused_and_says_why(tmp_path, capsys):
    runs = [make_run(tmp_path, "100K", cycles=6), make_run(tmp_path, "600K", cycles=8)]
    markdown, summary = report_on(runs, tmp_path / "report")
    printed = capsys.readouterr().out
    assert summary["scaling_fit"] is None and summary["censored_fit"] is None
    reason = summary["scaling_fit_reason"]
    assert "exact onsets at 2 model sizes (98,624, 603,120 params)" in reason and "3 or more" in reason
    assert f"no least-squares fit: {reason}" in markdown
    law_lines = [line for line in markdown.splitlines() if "· P^" in line]
    assert len(law_lines) == 1 and law_lines[0].startswith("- published law (the study's tasks): T = ")
    assert "360 tasks (1.8e+12 tokens at 5e+09 tokens per task)" in law_lines[0]  # not the runs' 1000-token tasks
    assert "no least-squares fit" in " ".join(printed.split())
    with pytest.raises(NoFit, match="2 model sizes"):
        fit_power_law([1e6, 1e6, 1e7], [10, 11, 30])

    assert main(["predict", "--params", "1e9", "--fit", str(tmp_path / "report" / "summary.json")]) == 2
    assert "no scaling fit: exact onsets at 2 model sizes" in capsys.readouterr().err


def test_a_three_size_fit_has_the_hand_computed_t_interval():
    # log P = 10, 11, 12; log T = 1, 2.5, 3: Sxx = 2, Sxy = 2, so b = 1 and log a = 13/6 - 11; residuals
    # -1/6, 1/3, -1/6 give RSS = 1/6 on 1 degree of freedom, se(b) = sqrt(RSS / Sxx) = 1/sqrt(12)
    fit = fit_power_law(np.exp([10.0, 11.0, 12.0]), np.exp([1.0, 2.5, 3.0]))
    half_width = T_QUANTILE_1_DF / math.sqrt(12)
    assert fit.n == 3 and fit.b == pytest.approx(1.0) and math.log(fit.a) == pytest.approx(13 / 6 - 11)
    assert fit.b_ci == pytest.approx((1 - half_width, 1 + half_width))
    assert fit.sigma == pytest.approx(math.sqrt(1 / 6))


def test_the_censored_fit_of_uncensored_data_is_least_squares_with_its_t_interval():
    rng = np.random.default_rng(3)
    sizes = np.array([5e6, 12e6, 27e6, 53e6, 106e6])
    onsets = 2e-4 * sizes ** 0.8 * np.exp(rng.normal(0, 0.2, len(sizes)))
    least_squares = fit_power_law(sizes, onsets)
    censored = fit_censored_power_law(sizes, [OnsetObservation(onset, None, "exact") for onset in onsets])
    assert censored.b == pytest.approx(least_squares.b, abs=1e-4)
    assert censored.b_ci == pytest.approx(least_squares.b_ci, abs=1e-3)


def test_the_censored_fit_recovers_a_known_exponent_from_censored_onsets():
    """Study sizes, 3 replicates each, T = 10 tasks at 5M rising as P^0.8 with 30 % scatter; probes at 8 tasks
    and on: an onset at or before the first probe is left-censored, runs that end before 300 tasks right-censored."""
    rng = np.random.default_rng(5)  # a draw with runs of every kind
    sizes = np.repeat([5e6, 12e6, 27e6, 53e6, 106e6, 314e6, 1e9], 3)
    onsets = 10 * (sizes / 5e6) ** 0.8 * np.exp(rng.normal(0, 0.3, len(sizes)))
    observations = [OnsetObservation(8, None, "left") if onset <= 8 else OnsetObservation(300, None, "right")
                    if onset > 300 else OnsetObservation(round(onset), None, "exact") for onset in onsets]
    assert {"left", "right", "exact"} == {observation.censoring for observation in observations}
    fit = fit_censored_power_law(sizes, observations)
    assert fit.b_ci[0] < 0.8 < fit.b_ci[1] and fit.b == pytest.approx(0.8, abs=0.1) and fit.n == len(sizes)
    exact = [(size, o.tasks) for size, o in zip(sizes, observations) if o.censoring == "exact"]
    treated_as_exact = fit_power_law(*zip(*exact))  # dropping the censored runs flattens the law
    assert abs(fit.b - 0.8) < abs(treated_as_exact.b - 0.8)


def test_censored_runs_show_as_bounds_in_the_onset_table(censored_report):
    _, markdown, summary = censored_report
    runs = {run["run"]: run for run in summary["runs"]}
    assert runs["flat"]["onset"] is None
    assert runs["flat"]["onset_observation"] == {"tasks": 8, "tokens": 8000, "censoring": "right"}
    assert runs["rising"]["onset_observation"] == {"tasks": 2, "tokens": 2000, "censoring": "left"}
    assert "| flat | 250K | 249,480 | continual | > 8 | > 8,000 | – |" in markdown
    assert "| rising | 250K | 249,480 | continual | ≤ 2 | ≤ 2,000 | [0, 4] tasks |" in markdown
    assert "| continual-5M | 5M | 4,979,808 | continual | 10 | 10,000 | [8, 12] tasks |" in markdown


def test_only_exact_onsets_enter_least_squares_and_the_censored_fit_takes_every_bound(censored_report):
    _, markdown, summary = censored_report
    least_squares, censored = summary["scaling_fit"], summary["censored_fit"]
    exact = fit_power_law([98_624, 603_120, 4_979_808], [4, 8, 10])
    assert least_squares["n"] == 3 and least_squares["b"] == pytest.approx(exact.b)
    assert least_squares["b_ci"] == pytest.approx(list(exact.b_ci))
    assert (censored["n"], censored["exact"], censored["right_censored"], censored["left_censored"]) == (5, 3, 1, 1)
    assert "least squares over exact onsets, n = 3 replicate groups (3 runs) at 3 sizes" in markdown
    assert ("censored maximum likelihood, n = 5 replicate groups (5 runs) at 4 sizes (3 exact, 1 right-censored, "
            "1 left-censored)") in markdown


def test_the_scaling_plot_marks_censored_runs_as_bounds(censored_report):
    _, _, summary = censored_report
    axes = scaling_figure(summary).axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert "onset (n = 3)" in labels
    assert "no onset yet: lower bound (n = 1)" in labels
    assert "rise from the first probe: upper bound (n = 1)" in labels
    assert any(label.startswith("least squares (n = 3)") for label in labels)
    assert any(label.startswith("censored ML (n = 5)") for label in labels)


def test_predict_uses_a_report_fit(censored_report, capsys):
    out, _, summary = censored_report
    fit = summary["scaling_fit"]
    assert main(["predict", "--params", "1e6", "--fit", str(out / "summary.json"), "--task-tokens", "1000"]) == 0
    assert f"{fit['a'] * 1e6 ** fit['b']:,.0f} tasks" in capsys.readouterr().out
