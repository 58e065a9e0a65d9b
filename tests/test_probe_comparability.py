"""Comparable probes and the AUC's sensitivity to step 0: mixed probe configs refused, the AUC without step 0,
log-spaced eval points, and AUC plots that tell runs apart and keep the baseline off the post-cycle scale."""

from __future__ import annotations

import json

import pytest

from fabricated_runs import BASELINE_AUC, make_run
from plasticity_dist.cli import main
from plasticity_dist.engine.validation import eval_steps
from plasticity_dist.probe.auc import auc_without_step0, curve_auc
from plasticity_dist.report.figures import auc_change_figure
from plasticity_dist.report.markdown import write_report
from plasticity_dist.study.config_files import load_config
from plasticity_dist.study.errors import ConfigError
from plasticity_dist.train.probe_run import probe_config_hash


def rewrite_probe(run_dir, tag, **changes):
    path = run_dir / "probes" / f"{tag}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("changes", [{"config_hash": "other"}, {"eval_tokens": [0, 150, 300]}])
def test_a_run_with_mixed_probe_configs_or_eval_grids_is_refused_in_one_line_naming_the_files(tmp_path, capsys,
                                                                                               changes):
    run = make_run(tmp_path, "100K", cycles=3)
    rewrite_probe(run, "cycle002", **changes)
    assert main(["report", str(run)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "not comparable" in error
    assert "cycle002.json (config_hash" in error and "cycle000.json, cycle001.json, cycle003.json (config_hash" in error
    assert not (run / "report" / "summary.json").exists()


def test_auc_without_step0_is_the_auc_of_the_curve_after_its_first_point():
    # after step 0: 3000 * (2 + 1) / 2 over a span of 3000 tokens
    assert auc_without_step0([0, 1000, 4000], [9.0, 2.0, 1.0]) == pytest.approx(1.5)
    assert auc_without_step0([0, 1000], [9.0, 2.0]) is None  # one point after step 0 has no area


def test_summary_gives_the_auc_without_step0_and_its_change_beside_the_studys(tmp_path):
    # fabricated curves: eval_tokens [0, 100, 300], losses [auc + 0.5, auc, auc - 0.25] -> without step 0:
    # 200 * (2 auc - 0.25) / 2 / 200 = auc - 0.125
    run = make_run(tmp_path, "100K", cycles=2, aucs=lambda cycle: 3.0 + 0.1 * cycle)
    summary = write_report([run], tmp_path / "report")
    probes = summary["runs"][0]["probes"]
    assert [probe["auc_without_step0"] for probe in probes] == pytest.approx([BASELINE_AUC - 0.125, 2.975, 3.075])
    assert [probe["auc_without_step0_pct_change"] for probe in probes] == pytest.approx(
        [100 * (3.375 - 2.975) / 2.975, 0.0, 100 * 0.1 / 2.975])
    assert [probe["auc_pct_change"] for probe in probes] == pytest.approx([100 * 0.4 / 3.1, 0.0, 100 * 0.1 / 3.1])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "% change w/o step 0" in markdown and "| 2.9750 | +0.00 |" in markdown


def eval_point_weights(tokens, spacing):
    """What each eval point's loss weighs in the AUC (the AUC is linear in the losses)."""
    return [curve_auc(tokens, [float(i == j) for j in range(len(tokens))], spacing) for i in range(len(tokens))]


@pytest.mark.parametrize("steps, points", [(5000, 11), (1000, 21), (16, 11), (3, 5)])
def test_on_a_log_grid_no_eval_point_weighs_more_than_two_intervals(steps, points):
    tokens = [256 * step for step in eval_steps(steps, points, "log")]
    weights = eval_point_weights(tokens, "log")
    assert sum(weights) == pytest.approx(1.0)
    assert max(weights) <= 2 / (len(tokens) - 1)
    if len(tokens) == points:  # no rounded step coincided: step 0 weighs half an interval, as on the linear grid
        assert weights[0] == pytest.approx(1 / (2 * (points - 1)))


def test_log_rule_is_the_trapezoid_over_log_tokens_and_the_linear_rule_is_unchanged():
    # log: 10, 100, 1000 tokens lie one log interval apart and step 0 one interval before: equal intervals
    assert curve_auc([0, 10, 100, 1000], [4.0, 3.0, 2.0, 1.0], "log") == pytest.approx((3.5 + 2.5 + 1.5) / 3)
    assert auc_without_step0([0, 10, 100, 1000], [4.0, 3.0, 2.0, 1.0], "log") == pytest.approx((2.5 + 1.5) / 2)
    assert curve_auc([0, 1000, 4000], [4.0, 2.0, 1.0], "linear") == curve_auc([0, 1000, 4000], [4.0, 2.0, 1.0]) == 1.875
    # over linear tokens, the last two of 11 log-spaced points would weigh nearly three quarters
    log_grid = eval_steps(5000, 11, "log")
    assert sum(eval_point_weights(log_grid, "linear")[-2:]) > 0.7
    with pytest.raises(ValueError, match="linear or log"):
        curve_auc([0, 1], [1.0, 1.0], "cubic")


def test_summary_takes_the_auc_without_step0_by_the_rule_of_the_probes_auc(tmp_path):
    run = make_run(tmp_path, "100K", cycles=2)
    for tag in ("cycle000", "cycle001", "cycle002"):
        rewrite_probe(run, tag, eval_tokens=[0, 10, 100, 1000], val_losses=[4.0, 3.0, 2.0, 1.0], auc=2.5,
                      auc_rule="trapezoid_log_tokens")
    summary = write_report([run], tmp_path / "report")
    assert [probe["auc_without_step0"] for probe in summary["runs"][0]["probes"]] == pytest.approx([2.0] * 3)


def test_log_spacing_evaluates_step_0_then_log_spaced_steps_to_the_end():
    assert eval_steps(1000, 5, "log") == [0, 1, 10, 100, 1000]
    assert eval_steps(1000, 5, "log") == eval_steps(1000, 5, "log")
    assert eval_steps(3, 5, "log") == [0, 1, 2, 3]  # rounding makes 1.44 coincide with 1
    assert eval_steps(1000, 5) == eval_steps(1000, 5, "linear") == [0, 250, 500, 750, 1000]


def test_eval_spacing_is_validated_and_enters_the_probe_config_hash():
    with pytest.raises(ConfigError, match=r"'probe.eval_spacing': 'cubic' is not allowed; allowed: linear, log"):
        load_config(None, ["probe.eval_spacing=cubic"])
    linear = load_config(None, [])
    assert linear.probe.eval_spacing == "linear"
    assert probe_config_hash(load_config(None, ["probe.eval_spacing=log"])) != probe_config_hash(linear)
    # where a probe runs does not change its numbers
    assert probe_config_hash(load_config(None, ["probe.slurm.time=09:00:00", "probe.local_gpus=3"])) == \
        probe_config_hash(linear)


def test_auc_plot_tells_runs_of_one_size_apart_and_keeps_the_baseline_on_its_own_axis(tmp_path):
    runs = [make_run(tmp_path, "100K", cycles=3, name=name, aucs=lambda cycle: 3.0 + 0.01 * cycle)
            for name in ("seed0", "seed1")]
    summary = write_report(runs, tmp_path / "report")
    baseline_axes, axes = auc_change_figure(summary["runs"], "continual").axes
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert len(labels) == 2 and len(set(labels)) == 2 and all("100K" in label for label in labels)
    baseline_change = 100 * (BASELINE_AUC - 3.01) / 3.01
    assert axes.get_ylim()[1] < 5 < baseline_change  # post-cycle changes of under 1 % are not flattened
    assert baseline_axes.get_ylim()[0] < baseline_change < baseline_axes.get_ylim()[1]
