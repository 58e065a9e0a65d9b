"""Cost of evaluating every language at every task end (`forgetting`), as a share of a task's training time.

Two one-cycle trainer runs (1 process each, ZeRO-1) of the demo config (100K, seq 64, 32,768-token tasks over
the eight study languages, Vietnamese zero-shot), forgetting off (the baseline) and on, one after the other
(accelerate allows one DeepSpeed accelerator per process, so each is its own `python -m` process). A task
end's time (evaluations and checkpoint) is the gap between its last step's record and the next task's first
step's record, less that first step's own time; a task's training time is the sum of its steps' times
(log_every=1). Each setting runs REPEATS times, alternating, and keeps its smallest figures. Share =
(evaluation time with - without) / training time. At study
scale the share follows from the tokens: 9 languages x `forgetting.val_tokens` forward-only tokens against a
5e9-token task (printed too). Target: within ~1 % of a task at study scale; the demo's is stated, not targeted.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from plasticity_dist.cli import main as cli_main
from plasticity_dist.study.config import PROBE_LANGUAGE, STUDY_LANGUAGES, ForgettingSection
from plasticity_dist.study.config_files import load_config
from plasticity_dist.train.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
STUDY_TASK_TOKENS = 5e9
REPEATS = 2


def run(work: Path, name: str, forgetting: bool) -> tuple[float, float]:
    """Mean evaluation seconds per task end and mean training seconds per task of one run."""
    demo = REPO / "configs" / "demo.yaml"
    overrides = [f"run_dir={work / name}", f"data.root={work / 'data'}", "curriculum.cycles=1", "probe.enabled=false",
                 "diagnostics.enabled=false", "early_warning.enabled=false", "log_every=1", "launch.zero_stage=1",
                 "data.num_workers=1", f"forgetting.enabled={str(forgetting).lower()}"]
    subprocess.run([sys.executable, "-m", "plasticity_dist.cli", "train", "--config", str(demo), *overrides],
                   check=True, cwd=REPO)
    config = load_config(demo, overrides)
    metrics = read_metrics(work / name / "metrics.jsonl")
    tokens_per_step = config.data.global_batch_size * config.data.seq_len
    steps = [record for record in metrics if record["event"] == "step"]
    seconds = [tokens_per_step / record["tokens_per_s"] for record in steps]
    evaluations = [after["time"] - before["time"] - after_seconds
                   for before, after, after_seconds in zip(steps, steps[1:], seconds[1:])
                   if after["task_index"] != before["task_index"]]
    trainings = [sum(s for s, record in zip(seconds, steps) if record["task_index"] == task)
                 for task in sorted({record["task_index"] for record in steps})]
    return statistics.fmean(evaluations), statistics.fmean(trainings)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-forgetting-"))
    for language in (*STUDY_LANGUAGES, PROBE_LANGUAGE):
        assert cli_main(["preprocess", "--source", f"synthetic:{language}", "--out", str(work / "data" / language),
                         "--tokens", "80000", "--seq-len", "64", "--val-tokens", "16384"]) == 0
    # alternated and repeated, the least disturbed (smallest) figure of each kept: a first run pays cold caches
    # and a busy machine slows whichever run it meets (seen: 11.1 s against 2.5 s a task from one run to the next)
    measured: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for repeat in range(REPEATS):
        for forgetting in (False, True):
            measured[forgetting].append(run(work, f"{'with' if forgetting else 'without'}-{repeat}", forgetting))
    without_eval, without_train = (min(figures) for figures in zip(*measured[False]))
    with_eval, with_train = (min(figures) for figures in zip(*measured[True]))
    demo = load_config(REPO / "configs" / "demo.yaml")
    share = (with_eval - without_eval) / statistics.fmean([without_train, with_train])
    print(f"demo_task_train_s: {with_train:.3f} (without forgetting {without_train:.3f})")
    print(f"demo_task_end_eval_s_without_forgetting: {without_eval:.3f}")
    print(f"demo_task_end_eval_s_with_forgetting: {with_eval:.3f}")
    print(f"demo_forgetting_eval_ratio_with_vs_without: {with_eval / without_eval:.2f}")
    print(f"demo_forgetting_share_of_task_pct: {100 * share:.2f} "
          f"({len(STUDY_LANGUAGES) + 1} x {demo.forgetting.val_tokens} tokens per {demo.curriculum.task_tokens}-token task)")
    study_tokens = (len(STUDY_LANGUAGES) + 1) * ForgettingSection.val_tokens
    print(f"study_forgetting_tokens_share_pct: {100 * study_tokens / STUDY_TASK_TOKENS:.4f} "
          f"(forward only; {study_tokens:,} tokens per 5e9-token task; target <= ~1)")
    # the measured cost of an evaluated token against a trained one, carried to the study's token counts
    eval_token_cost = ((with_eval - without_eval) / ((len(STUDY_LANGUAGES) + 1) * demo.forgetting.val_tokens)
                       / (statistics.fmean([without_train, with_train]) / demo.curriculum.task_tokens))
    print(f"measured_eval_token_cost_vs_train_token: {eval_token_cost:.3f}")
    print(f"study_forgetting_share_pct_at_measured_cost: {100 * eval_token_cost * study_tokens / STUDY_TASK_TOKENS:.4f}")


if __name__ == "__main__":
    main()
