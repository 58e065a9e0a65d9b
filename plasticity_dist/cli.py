"""`plasticity-dist` command line: each subcommand parses its arguments and dispatches."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from plasticity_dist.common.logging import quiet_dependencies
from plasticity_dist.common.processes import exit_process
from plasticity_dist.common.run_lock import RunLockedError
from plasticity_dist.study.errors import ConfigError

Handler = Callable[[argparse.Namespace], int]


def _models(args: argparse.Namespace) -> int:
    from plasticity_dist.model.table import preset_rows, print_preset_table

    rows = preset_rows(args.vocab_size, args.seq_len)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_preset_table(rows)
    return 0


def _add_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the model size presets with exact parameter counts")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--vocab-size", type=int, default=257, help="vocabulary for total counts (default: bytes + eot)")
    parser.add_argument("--seq-len", type=int, default=2048, help="context length for position embeddings")
    parser.set_defaults(handler=_models)


def _train(args: argparse.Namespace) -> int:
    from plasticity_dist.study.config_files import load_config

    config = load_config(args.config, args.overrides)  # a bad config fails before DeepSpeed loads
    from plasticity_dist.train.trainer import train

    return train(config)


def _probe(args: argparse.Namespace) -> int:
    if args.pending or args.resubmit:
        return _probe_queue(args.pending or args.resubmit, resubmit=bool(args.resubmit))
    if args.print_run_dir:
        from plasticity_dist.common.run_layout import RunLayout

        print(RunLayout.of_checkpoint(args.checkpoint).probe_run(Path(args.checkpoint).name).root)
        return 0
    from plasticity_dist.train.probe_run import run_probe

    return run_probe(args.checkpoint, args.config, force=args.force)


def _probe_queue(run_dir: str, resubmit: bool) -> int:
    """List a run's open probe requests, or (holding the run's lock, so no trainer runs meanwhile) resubmit
    every open or failed one and wait for local probes to finish."""
    from plasticity_dist.study.config_files import load_config
    from plasticity_dist.probe.scheduler import ProbeScheduler
    from plasticity_dist.common.run_layout import RunLayout
    from plasticity_dist.common.run_lock import RunLock

    layout = RunLayout(run_dir)
    scheduler = ProbeScheduler(layout.root, load_config(layout.config).probe)
    if resubmit:
        lock = RunLock(layout.root)
        lock.acquire()  # refused while the run's trainer lives: it resubmits its probes itself
        try:
            scheduler.resubmit()
            scheduler.drain()
        finally:
            lock.release()
    for line in scheduler.describe():
        print(line)
    return 0


def _add_probe(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help="probe one checkpoint (what async probe jobs run), or list pending probes")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--checkpoint", help="checkpoint folder RUN/checkpoints/<tag>")
    target.add_argument("--pending", metavar="RUN", help="list the probe requests of RUN without a result: "
                        "state (running, waiting, failed), attempts and the last attempt's log")
    target.add_argument("--resubmit", metavar="RUN", help="after RUN's trainer has finished: resubmit every open "
                        "or failed probe request (each gets probe.retries more attempts)")
    parser.add_argument("--config", help="experiment YAML (default: the run's config.yaml)")
    parser.add_argument("--force", action="store_true", help="replace a result made under another probe config")
    parser.add_argument("--print-run-dir", action="store_true", help="print the probe's run directory "
                        "(RUN/probes/<tag>) and exit (what slurm/probe.sh requeues on)")
    parser.set_defaults(handler=_probe)


def _export(args: argparse.Namespace) -> int:
    from plasticity_dist.export import export_all, export_checkpoint

    exported = export_all(args.all, args.out) if args.all else [export_checkpoint(args.checkpoint, args.out)]
    for folder in exported:
        print(folder)
    return 0


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="a checkpoint as a Hugging Face folder (transformers, lm-eval)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint folder RUN/checkpoints/<tag>")
    source.add_argument("--all", metavar="RUN", help="every kept checkpoint of RUN, each to OUT/<tag>")
    parser.add_argument("--out", required=True, help="folder to write (replaced if it exists)")
    parser.set_defaults(handler=_export)


def _demo(args: argparse.Namespace) -> int:
    from plasticity_dist.demo import run_demo

    run_demo(Path(args.out), cycles=args.cycles, task_tokens=args.task_tokens)
    return 0


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="the whole pipeline at toy scale on CPU, ending in a report")
    parser.add_argument("--out", default="runs/demo", help="output folder (data, runs, report)")
    parser.add_argument("--cycles", type=int, help="cycles per run (default: configs/demo.yaml)")
    parser.add_argument("--task-tokens", type=int, help="tokens per task (default: configs/demo.yaml)")
    parser.set_defaults(handler=_demo)


def _control(args: argparse.Namespace) -> int:
    from plasticity_dist.control import load_study, run_control

    run_control(load_study(args.study), Path(args.out) if args.out else None, cycles=args.cycles, jobs=args.jobs,
                only=args.only or ())
    return 0


def _add_control(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("control", help="the control study (permuted text) where plasticity loss shows "
                                                   "on CPU, ending in a report")
    parser.add_argument("--study", default="onset", help="a study of configs/control-studies.yaml: onset (the "
                        "default: 3 sizes x 2 seeds and 12.4K with L2 Init, 100 tasks at LR 1e-3 x 32/width, "
                        "probes over 4 permutations), sizes (the same sizes, 28K and 50K to 160 tasks), scaling "
                        "(LR 3e-3, 40 tasks, single probes) or ranking (every mitigation and a weight-decay sweep "
                        "at 12.4K x 3 seeds)")
    parser.add_argument("--out", help="output folder (data, runs, report; default: the study's out)")
    parser.add_argument("--cycles", type=int, help="cycles per run (default: the study's, else configs/control.yaml)")
    parser.add_argument("--jobs", type=int, help="runs at once, one process each (default: the usable CPUs)")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="train only these runs, no report (the study in "
                                                                  "pieces; a later call without --only reports)")
    parser.set_defaults(handler=_control)


def _token_count(text: str) -> int:
    """A positive token count, written as an integer or in exponent notation (5e9)."""
    try:
        value = int(text) if text.isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(value)


def _preprocess(args: argparse.Namespace) -> int:
    from plasticity_dist.data.preprocess import PreprocessArgs, preprocess

    names = ("source", "tokens", "seq_len", "tokenizer", "text_field", "rows_per_block", "shard_tokens", "val_tokens", "seed")
    settings = PreprocessArgs(**{name: getattr(args, name) for name in names if getattr(args, name) is not None})
    print(preprocess(settings, args.out, workers=args.workers, shard_index=args.shard_index, num_shards=args.num_shards))
    return 0


def _add_preprocess(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess", help="text -> token shards + manifest; resumable, splittable into array jobs"
    )
    parser.add_argument("--source", required=True, help="hf:DATASET[:CONFIG][@SPLIT], a .jsonl/.parquet/.txt file "
                        "or folder, or synthetic:LANG")
    parser.add_argument("--out", required=True, help="dataset folder to write (the validation split goes to OUT/val)")
    parser.add_argument("--tokens", type=_token_count, required=True, help="tokens to store, rounded down to whole "
                        "sequences of seq_len+1")
    parser.add_argument("--seq-len", type=int, help="sequence length (default 2048); rows hold seq_len+1 tokens")
    parser.add_argument("--tokenizer", help="'byte' (default) or a Hugging Face tokenizer folder or hub name")
    parser.add_argument("--text-field", help="field holding the text in jsonl/parquet/hf records (default 'text')")
    parser.add_argument("--workers", type=int, default=1, help="processes building shards in parallel")
    parser.add_argument("--shard-index", type=int, default=0, help="this array job's index i: builds shards k %% n == i")
    parser.add_argument("--num-shards", type=int, default=1, help="number n of array jobs sharing the work")
    parser.add_argument("--rows-per-block", type=int, help="sequences per compressed block (default ~2^19 tokens)")
    parser.add_argument("--shard-tokens", type=_token_count, help="tokens per shard (default 2^27)")
    parser.add_argument("--val-tokens", type=_token_count, help="also write a validation split of this many tokens "
                        "to OUT/val, from documents the training split does not use")
    parser.add_argument("--seed", type=int, help="seed of the source's partitioning and synthetic text (default 0)")
    parser.set_defaults(handler=_preprocess)


def _tokenizer_train(args: argparse.Namespace) -> int:
    from plasticity_dist.data.sources import tokenizer_sample
    from plasticity_dist.data.tokenizer_training import TokenizerTrainingArgs, train_tokenizer

    given = {"sources": tuple(args.source) if args.source else None, "vocab_size": args.vocab_size,
             "sample_bytes": args.sample_bytes, "text_field": args.text_field, "seed": args.seed}
    # what configs/corpora.yaml names, for whatever the command line leaves out
    settings = TokenizerTrainingArgs(**{**tokenizer_sample(), **{k: v for k, v in given.items() if v is not None}})
    print(train_tokenizer(settings, args.out))
    return 0


def _add_tokenizer(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="train the study's shared multilingual tokenizer")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="one byte-level BPE on an equal sample of every source, deterministic")
    train.add_argument("--source", nargs="+", help="sources as for preprocess (default: the languages "
                       "configs/corpora.yaml's `tokenizer` entry names, from its default corpus set)")
    train.add_argument("--vocab-size", type=int, help="tokens, end-of-text included (default: corpora.yaml's)")
    train.add_argument("--sample-bytes", type=_token_count, help="UTF-8 bytes of text taken from each source "
                       "(default: corpora.yaml's)")
    train.add_argument("--text-field", help="field holding the text in jsonl/parquet/hf records (default 'text')")
    train.add_argument("--seed", type=int, help="seed of synthetic sources (default 0)")
    train.add_argument("--out", required=True, help="folder to write (replaced if it exists); then use it as "
                       "preprocess --tokenizer OUT")
    train.set_defaults(handler=_tokenizer_train)


def _verify(args: argparse.Namespace) -> int:
    from plasticity_dist.data.preprocess import verify

    for line in verify(args.dataset):
        print(line)
    return 0


def _add_verify(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="check every shard of a dataset against its manifest")
    parser.add_argument("dataset", help="dataset folder (its val/ split is checked too)")
    parser.set_defaults(handler=_verify)


def _report(args: argparse.Namespace) -> int:
    from plasticity_dist.report.markdown import write_report

    if args.out is None and len(args.run_dirs) > 1:
        raise ValueError("--out is required when reporting on several runs")
    write_report(args.run_dirs, args.out or f"{args.run_dirs[0]}/report", k=args.onset_k)
    return 0


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="AUC tables, onset, scaling fit and plots across runs")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (each with config.yaml)")
    parser.add_argument("--out", help="folder for report.md, summary.json and the plots (default: RUN_DIR/report "
                        "for a single run)")
    parser.add_argument("--onset-k", type=float, default=3.0, help="a rise counts as sustained above k x the probe "
                        "noise (default 3)")
    parser.set_defaults(handler=_report)


def _predict(args: argparse.Namespace) -> int:
    from plasticity_dist.analysis.scaling import STUDY_LAW, law_from_summary, predict_onset

    law = law_from_summary(args.fit) if args.fit else STUDY_LAW
    tasks = predict_onset(args.params, law)
    print(f"law: T = {law.a:.4g} * P^{law.b:.4f} ({args.fit or 'published'})")
    print(f"model: {args.params:,} non-embedding parameters")
    print(f"onset: {tasks:,.0f} tasks = {tasks * args.task_tokens:.3g} tokens at {args.task_tokens:.3g} tokens per task")
    if not law.has_intervals:
        print("uncertainty: none given: " + (f"{args.fit} predates the fit's intervals (run report again)" if args.fit
                                             else "the published law states no interval of its own"))
    else:
        low, high = law.prediction_interval(args.params)
        low_params, high_params = law.params_range
        where = ("inside" if low_params <= args.params <= high_params else
                 f"an extrapolation {max(args.params / high_params, low_params / args.params):.1f}x beyond")
        print(f"95 % prediction interval: {low:,.0f} to {high:,.0f} tasks ({where} the sizes fitted, "
              f"{low_params:,.0f} to {high_params:,.0f})")
    return 0


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    from plasticity_dist.study.config import CurriculumSection

    parser = subparsers.add_parser("predict", help="predicted onset of plasticity loss (tasks, tokens) for a model size")
    parser.add_argument("--params", type=_token_count, required=True, help="non-embedding parameters, e.g. 1e9")
    parser.add_argument("--fit", help="a report's summary.json whose scaling fit to use (default: the published law)")
    parser.add_argument("--task-tokens", type=_token_count, default=CurriculumSection().task_tokens,
                        help="tokens per task (default: the study's 5e9)")
    parser.set_defaults(handler=_predict)


def _plan(args: argparse.Namespace) -> int:
    from plasticity_dist.study.config_files import load_config
    from plasticity_dist.report.plan import plan_study
    from plasticity_dist.report.plan_table import plan_markdown, print_plan_table

    plans = [plan_study(load_config(path), Path(path).name, gpus=args.gpus, gpu=args.gpu, mfu=args.mfu)
             for path in args.config]
    if args.json:
        print(json.dumps([plan.to_json() for plan in plans], indent=2))
    elif args.markdown:
        print(plan_markdown(plans))
    else:
        print_plan_table(plans)
    return 0


def _add_plan(subparsers: argparse._SubParsersAction) -> None:
    from plasticity_dist.report.plan import ASSUMED_MFU, GPU_PEAK_TFLOPS

    parser = subparsers.add_parser("plan", help="what a config will cost: tokens, probes, onset, GPU-hours, disk")
    parser.add_argument("--config", nargs="+", required=True, help="experiment YAML(s); several give one column each")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs training the run, for its wall time (default 8)")
    parser.add_argument("--gpu", choices=sorted(GPU_PEAK_TFLOPS), default="h100",
                        help="GPU whose dense bf16 peak sets the GPU-hours (default h100)")
    parser.add_argument("--mfu", type=float, default=ASSUMED_MFU,
                        help=f"model FLOP utilisation assumed (default {ASSUMED_MFU})")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON (a list, one plan per config)")
    output.add_argument("--markdown", action="store_true", help="print a Markdown table (as in the README)")
    parser.set_defaults(handler=_plan)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="run or resume a continual or stationary run (also under accelerate launch / torchrun)"
    )
    parser.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. run_dir=runs/x")
    parser.set_defaults(handler=_train)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_models, _add_tokenizer, _add_preprocess, _add_verify, _add_plan, _add_train, _add_probe, _add_report,
    _add_predict,
    _add_export, _add_demo, _add_control,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plasticity-dist", description="Measure loss of plasticity in GPT-style language models."
    )
    # The deepspeed launcher (and torch.distributed.launch) put --local_rank=N before the subcommand; the rank
    # is read from LOCAL_RANK, which every launcher also sets, so the argument is accepted and not used.
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_dependencies()
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, FileNotFoundError, ValueError, KeyError, RunLockedError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"plasticity-dist {args.command}: error: {message}", file=sys.stderr)
        return 2


def run() -> NoReturn:
    """The process's entry point (`plasticity-dist`, `python -m plasticity_dist.cli`): `main`'s status is its exit
    status."""
    exit_process(main())


if __name__ == "__main__":
    run()
