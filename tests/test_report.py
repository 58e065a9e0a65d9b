"""`plasticity-dist report` and `predict` on hand-built run directories, through the command line."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from fabricated_runs import TASKS, make_run, probe_auc
from plasticity_dist.cli import main
from plasticity_dist.probe.auc import curve_auc

SUMMARY_KEYS = {"runs", "scaling_fit"}
RUN_KEYS = {"run", "model", "non_embedding_params", "problem", "probes", "onset"}
PROBE_KEYS = {"cycle", "tokens", "auc", "auc_pct_change"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = [make_run(root, "100K", cycles=6), make_run(root, "600K", cycles=8),
            make_run(root, "250K", cycles=3, problem="stationary"),
            make_run(root, "250K", cycles=2, with_probes=False)]
    out = root / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_report_writes_markdown_summary_and_plots_that_open(report):
    out, summary = report
    markdown = (out / "report.md").read_text()
    for heading in ("## Probe AUC", "## Onset of plasticity loss", "Definition:", "## Scaling law", "## Training"):
        assert heading in markdown
    expected = {"auc_change_continual.png", "auc_change_stationary.png", "onset_scaling.png",
                "probe_curves_continual-100K.png", "probe_curves_continual-600K.png",
                "probe_curves_stationary-250K.png", "training_loss_continual-100K.png",
                "training_loss_continual-600K.png", "training_loss_stationary-250K.png",
                "training_loss_continual-250K.png"}
    assert {path.name for path in out.glob("*.png")} == expected
    for name in expected:
        assert f"({name})" in markdown
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 100


def test_summary_has_the_required_keys_and_types(report):
    _, summary = report
    assert SUMMARY_KEYS <= set(summary)
    assert {run["run"] for run in summary["runs"]} == {"continual-100K", "continual-600K", "stationary-250K",
                                                       "continual-250K"}
    for run in summary["runs"]:
        assert RUN_KEYS <= set(run)
        assert isinstance(run["run"], str) and isinstance(run["model"], str)
        assert isinstance(run["non_embedding_params"], int) and run["problem"] in ("continual", "stationary")
        assert run["onset"] is None or isinstance(run["onset"], (int, float))
        for probe in run["probes"]:
            assert PROBE_KEYS <= set(probe)
            assert isinstance(probe["cycle"], int) and isinstance(probe["tokens"], int)
            assert isinstance(probe["auc"], float) and isinstance(probe["auc_pct_change"], float)
    assert summary["scaling_fit"] is None and isinstance(summary["scaling_fit_reason"], str)  # 2 sizes


def test_summary_holds_pct_change_against_cycle_1_and_the_onset_in_tasks(report):
    _, summary = report
    runs = {run["run"]: run for run in summary["runs"]}
    small = runs["continual-100K"]
    assert small["model"] == "100K" and small["non_embedding_params"] == 98_624
    assert [probe["cycle"] for probe in small["probes"]] == list(range(7))
    cycle1 = probe_auc("100K", 1)
    for probe in small["probes"][1:]:
        assert probe["auc_pct_change"] == pytest.approx(100 * (probe_auc("100K", probe["cycle"]) - cycle1) / cycle1)
    assert small["probes"][0]["auc_pct_change"] == pytest.approx(100 * (3.5 - cycle1) / cycle1)  # baseline
    for name, minimum in (("continual-100K", 2 * len(TASKS)), ("continual-600K", 4 * len(TASKS))):
        low, high = runs[name]["onset_interval"]  # the U's minimum, where its rise starts
        assert runs[name]["onset_censoring"] == "interval" and low < minimum <= high
    assert runs["continual-250K"]["probes"] == [] and runs["continual-250K"]["onset"] is None
    assert runs["stationary-250K"]["onset"] is None  # 3 probes are too few to call a rise


def test_report_prints_the_auc_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    run = make_run(tmp_path, "100K", cycles=4)
    assert main(["report", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "Probe AUC" in printed and "0 (baseline)" in printed
    assert (run / "report" / "summary.json").is_file()


def test_report_on_a_folder_that_is_not_a_run_names_it(tmp_path, capsys):
    run = make_run(tmp_path, "100K", cycles=2)
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    assert main(["report", str(run), str(not_a_run), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert str(not_a_run) in error and "config.yaml" in error


def test_report_names_a_broken_probe_result(tmp_path, capsys):
    run = make_run(tmp_path, "100K", cycles=2)
    (run / "probes" / "cycle001.json").write_text('{"cycle": 1}')
    assert main(["report", str(run)]) == 2
    assert "cycle001.json" in capsys.readouterr().err


def test_predict_from_the_published_law(capsys):
    assert main(["predict", "--params", "1e9"]) == 0
    printed = capsys.readouterr().out
    assert "360 tasks" in printed and "1.8e+12 tokens" in printed


def test_predict_refuses_a_summary_without_fit(tmp_path, capsys):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"runs": [], "scaling_fit": None}))
    assert main(["predict", "--params", "1e9", "--fit", str(summary)]) == 2
    assert "no scaling fit" in capsys.readouterr().err


def test_a_diverged_probe_is_kept_and_reported_as_diverged_without_a_change(tmp_path):
    def aucs(cycle):
        return None if cycle == 3 else 3.0 + 0.1 * cycle

    warning = {"kind": "probe_diverged", "step": 24, "tokens": 6000, "task": "zh", "task_index": 5, "cycle": 3,
               "value": None, "reference": 3.1, "threshold": 3.255, "message": "probe after task 6 diverged"}
    runs = [make_run(tmp_path, "100K", cycles=3, name="plain", aucs=aucs, warnings=[warning],
                     diagnostics=lambda cycle, task_index, task_end: {"dormant_ratio": 0.1 * cycle}),
            make_run(tmp_path, "100K", cycles=3, name="shrink", aucs=aucs,
                     overrides=["mitigations.shrink_perturb.enabled=true"])]
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    probes = summary["runs"][0]["probes"]
    assert [probe["diverged"] for probe in probes] == [False, False, False, True]
    assert [probes[3][key] for key in ("auc", "auc_pct_change", "auc_without_step0")] == [None, None, None]
    assert probes[2]["auc_pct_change"] == pytest.approx(100 * 0.1 / 3.1)
    markdown = (out / "report.md").read_text()
    assert "| plain | 100K | 3 | 6 | 6,000 | diverged | – | – | – | – | – |" in markdown
    comparison = markdown.split("### Runs that differ only in their mitigations")[1]
    assert "| 3.2000 (+3.23) | diverged |" in comparison
    assert "| – | 3.1 | 3.255 | probe after task 6 diverged |" in markdown
    for figure in ("probe_curves_plain.png", "diagnostics_plain.png"):
        assert f"({figure})" in markdown and (out / figure).is_file()


def test_a_run_whose_auc_starts_at_a_later_eval_point_says_where(tmp_path):
    run = make_run(tmp_path, "100K", cycles=3, name="late")
    for path in (run / "probes").glob("cycle*.json"):
        result = json.loads(path.read_text())
        result |= {"auc": curve_auc(result["eval_tokens"][1:], result["val_losses"][1:]), "auc_from_point": 1}
        path.write_text(json.dumps(result))
    out = tmp_path / "report"
    assert main(["report", str(run), str(make_run(tmp_path, "100K", cycles=3, name="whole")), "--out", str(out)]) == 0
    late, whole = json.loads((out / "summary.json").read_text())["runs"]
    assert (late["auc_from_tokens"], whole["auc_from_tokens"]) == (100, 0)
    assert [probe["auc_without_step0"] for probe in late["probes"]] == [probe["auc"] for probe in late["probes"]]
    assert "late: from 100 probe tokens." in (out / "report.md").read_text()
    assert "whole: from" not in (out / "report.md").read_text()


def test_the_report_names_the_runs_whose_probes_average_several_permutations(tmp_path):
    run = make_run(tmp_path, "100K", cycles=2, name="averaged")
    for path in (run / "probes").glob("cycle*.json"):
        result = json.loads(path.read_text())
        path.write_text(json.dumps(result | {"permutation_aucs": [result["auc"] - 0.1, result["auc"] + 0.1]}))
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["runs"][0]["probe_permutations"] == 2
    assert "each under a probe permutation of its own (`curriculum.control.probe_permutations`" in (
        out / "report.md").read_text()
