"""The scaling fit of the onset: interval-censored maximum likelihood over runs, against hand computations and a
known law, refused where the data cannot support it, and shown with its uncertainty in the report and plot."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from fabricated_runs import make_run
from plasticity_dist.analysis.censoring import NoFit, OnsetObservation
from plasticity_dist.analysis.scaling import STUDY_LAW, check_probe_noise, fit_power_law, predict_onset
from plasticity_dist.cli import main
from plasticity_dist.report.figures import scaling_figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import law_recovery  # noqa: E402

T_QUANTILE_1_DF = 12.706204736  # Student t, 97.5 % quantile, 1 degree of freedom (from tables)


def tasks_in(low: float, high: float | None) -> OnsetObservation:
    return OnsetObservation((low, high), (1000 * low, None if high is None else 1000 * high))


def narrow(log_onset: float) -> OnsetObservation:
    return tasks_in(math.exp(log_onset - 1e-4), math.exp(log_onset + 1e-4))


def report_on(runs, out):
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    return (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())


def test_narrow_intervals_give_least_squares_with_its_t_intervals():
    # log P = 10, 11, 12; log T = 1, 2.5, 3: Sxx = 2, Sxy = 2, so b = 1 and log a = 13/6 - 11; residuals
    # -1/6, 1/3, -1/6 give RSS = 1/6 on 1 degree of freedom, se(b) = sqrt(RSS / Sxx) = 1/sqrt(12)
    fit = fit_power_law(np.exp([10.0, 11.0, 12.0]), [narrow(1.0), narrow(2.5), narrow(3.0)])
    half_width = T_QUANTILE_1_DF / math.sqrt(12)
    assert fit.n == 3 and fit.b == pytest.approx(1.0, abs=1e-3) and math.log(fit.a) == pytest.approx(13 / 6 - 11, abs=1e-2)
    assert fit.b_ci == pytest.approx((1 - half_width, 1 + half_width), abs=1e-2)
    # the textbook prediction interval at log P = 11: s·sqrt(1 + 1/n + 0) with s² = RSS / (n − 2)
    low, high = fit.prediction_interval(math.exp(11.0))
    half = T_QUANTILE_1_DF * math.sqrt(1 / 6 * (1 + 1 / 3))
    assert (math.log(low), math.log(high)) == pytest.approx((13 / 6 - half, 13 / 6 + half), abs=2e-2)


def test_grid_intervals_and_censored_runs_recover_a_known_exponent():
    """Study sizes, 2 seeds each, the published law with 20 % scatter, probes every 8 tasks: each onset is known
    only to lie between two probes, at or before the first (left) or after the last judgeable one (right)."""
    rng = np.random.default_rng(5)
    sizes = np.repeat(law_recovery.SIZES, 2).astype(float)
    onsets = STUDY_LAW.a * sizes ** STUDY_LAW.b * np.exp(rng.normal(0, 0.2, len(sizes)))
    observations = [tasks_in(0, 8) if onset <= 8 else tasks_in(120, None) if onset > 120
                    else tasks_in(8 * math.floor(onset / 8), 8 * math.floor(onset / 8) + 8) for onset in onsets]
    assert {"left", "right", "interval"} == {observation.censoring for observation in observations}
    fit = fit_power_law(sizes, observations)
    assert fit.b_ci[0] < STUDY_LAW.b < fit.b_ci[1] and fit.b == pytest.approx(STUDY_LAW.b, abs=0.1)


def test_a_fit_the_data_cannot_support_is_refused_with_the_reason():
    with pytest.raises(NoFit, match="2 model sizes"):
        fit_power_law([1e6, 1e6, 1e7], [tasks_in(4, 8), tasks_in(8, 16), tasks_in(16, 24)])
    with pytest.raises(NoFit, match="not bounded by the data"):  # every onset before the first probe
        fit_power_law([1e6, 1e7, 1e8], [tasks_in(0, 8), tasks_in(0, 8), tasks_in(0, 8)])
    with pytest.raises(NoFit, match="too noisy .* median σ 2.00 % of the AUC over 3 runs"):  # the data, not b
        check_probe_noise([2.5, 2.0, 0.3])
    check_probe_noise([0.3, 0.2, 1.4])


def test_the_small_yardstick_recovers_the_published_exponent():
    """bench/law_recovery.py's case of the issue's target, small: the six sizes x 2 seeds, AUC noise 0.2 %,
    scatter 0.1, a V-shaped dip, probes after every task of the first 2 cycles then every cycle."""
    results = [law_recovery.new_estimator(study)["interval_ml"]
               for study in law_recovery.simulate("v", "early", 0.2, 0.1, seeds=2, studies=12, seed=0)]
    assert all(result is not None for result in results)
    median_b = float(np.median([b for b, _, _ in results]))
    covered = sum(low <= law_recovery.TRUE_B <= high for _, low, high in results)
    assert abs(median_b - law_recovery.TRUE_B) <= 0.05 and covered >= 10


def law_following_aucs(params: float, seed: int):
    """The published law's onset for `params`, a 1 % dip until it and a rise of 0.5 % per cycle after it, AUC
    noise 0.2 %: probes every 2 of the run's tasks stand for every 8 of the study's (b is unchanged)."""
    rng = np.random.default_rng(seed)
    onset = predict_onset(params) * math.exp(rng.normal(0, 0.1))
    noise = rng.normal(0, 0.002, 31)

    def aucs(cycle: int) -> float:
        tasks = 8.0 * cycle
        return float(3.0 * (1.01 - 0.01 * min(tasks, onset) / onset + 0.005 / 8 * max(tasks - onset, 0) + noise[cycle]))
    return aucs


@pytest.fixture(scope="module")
def law_report(tmp_path_factory):
    """A simulated study through `plasticity-dist report`: 5M-314M, 2 seeds each, 30 cycles, following the law."""
    root = tmp_path_factory.mktemp("study")
    runs = [make_run(root, preset, cycles=30, name=f"{preset}-seed{seed}", aucs=law_following_aucs(params, 10 * index + seed),
                     overrides=[f"seed={seed}"])
            for index, (preset, params) in enumerate(zip(("5M", "12M", "27M", "53M", "106M", "314M"), law_recovery.SIZES))
            for seed in (1, 2)]
    out = root / "report"
    return out, *report_on(runs, out)


def test_the_report_on_runs_that_follow_the_law_prints_b_with_an_interval_holding_it(law_report):
    out, markdown, summary = law_report
    fit = summary["scaling_fit"]
    assert fit["b_ci"][0] < STUDY_LAW.b < fit["b_ci"][1] and fit["b_ci"][1] - fit["b_ci"][0] < 0.5
    assert (fit["runs"], fit["groups"], fit["sizes"]) == (12, 6, 6)
    assert f"b in [{fit['b_ci'][0]:.4f}, {fit['b_ci'][1]:.4f}]" in markdown
    prediction = next(line for line in markdown.splitlines() if line.startswith("- prediction:"))
    assert "95 % prediction interval" in prediction and "extrapolation 3.1× beyond the largest size" in prediction
    assert "states no interval" in markdown


def test_onsets_show_as_intervals_in_the_table_and_the_plot(law_report):
    _, markdown, summary = law_report
    for run in summary["runs"]:
        low, high = run["onset_observation"]["tasks"]
        assert run["onset_observation"]["censoring"] in ("interval", "left")
        row = next(line for line in markdown.splitlines()
                   if line.startswith(f"| {run['run']} | {run['model']} | {run['non_embedding_params']:,} |"))
        assert (f"≤ {high:,.4g}" if low == 0 else f"({low:,.4g}, {high:,.4g}]") in row
    axes = scaling_figure(summary).axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any(label.startswith("fit (n = 12 runs)") for label in labels) and "95 % confidence band" in labels
    assert not any(label.startswith("published") for label in labels)  # the runs' tasks are not the study's
    assert axes.get_xlim()[1] < 1e9  # drawn on the range of the data only


def test_a_two_size_study_has_no_fit_and_says_why(tmp_path, capsys):
    runs = [make_run(tmp_path, "100K", cycles=6), make_run(tmp_path, "600K", cycles=8)]
    markdown, summary = report_on(runs, tmp_path / "report")
    reason = summary["scaling_fit_reason"]
    assert summary["scaling_fit"] is None and "2 model sizes" in reason and "3 or more" in reason
    assert f"no fit: {reason}" in markdown
    assert main(["predict", "--params", "1e9", "--fit", str(tmp_path / "report" / "summary.json")]) == 2
    assert "no scaling fit" in capsys.readouterr().err


def test_predict_gives_a_fit_its_prediction_interval_and_the_published_law_none(law_report, capsys):
    out, _, summary = law_report
    fit = summary["scaling_fit"]
    assert main(["predict", "--params", "1e9", "--fit", str(out / "summary.json"), "--task-tokens", "1000"]) == 0
    printed = capsys.readouterr().out
    assert f"{fit['a'] * 1e9 ** fit['b']:,.0f} tasks" in printed and "95 % prediction interval" in printed
    assert main(["predict", "--params", "1e9"]) == 0
    assert "states no interval" in capsys.readouterr().out
    older = out / "older_summary.json"  # a report from before the fit had intervals
    older.write_text(json.dumps({"runs": [], "scaling_fit": {"a": fit["a"], "b": fit["b"]}}))
    assert main(["predict", "--params", "1e9", "--fit", str(older)]) == 0
    assert "predates the fit's intervals" in capsys.readouterr().out


def test_a_control_study_fits_the_law_over_its_control_runs_without_mitigations(tmp_path):
    control = ["curriculum.problem=control", "curriculum.tasks=[{name: en}]", "curriculum.control.tasks_per_cycle=2"]
    runs = [make_run(tmp_path, preset, cycles=8, name=f"control-{preset}", overrides=control)
            for preset in ("100K", "250K", "600K")]
    runs.append(make_run(tmp_path, "100K", cycles=8, name="control-100K-l2",
                         overrides=[*control, "mitigations.l2_init.enabled=true"]))
    markdown, summary = report_on(runs, tmp_path / "report")
    assert "over the control runs without mitigations" in markdown
    assert summary["scaling_fit"]["runs"] == 3 and summary["scaling_fit"]["sizes"] == 3, summary["scaling_fit_reason"]
