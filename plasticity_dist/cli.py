"""`plasticity-dist` command line: each subcommand parses its arguments and dispatches."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from plasticity_dist.config import ConfigError

Handler = Callable[[argparse.Namespace], int]


def _models(args: argparse.Namespace) -> int:
    from plasticity_dist.model_table import preset_rows, print_preset_table

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
    from plasticity_dist.config import config_to_yaml, load_config
    from plasticity_dist.logging import get_logger
    from plasticity_dist.trainer import train

    config = load_config(args.config, args.overrides)
    get_logger().info("resolved config:\n" + config_to_yaml(config))
    return train(config)


def _probe(args: argparse.Namespace) -> int:
    if args.pending:
        from plasticity_dist.probe.queue import ProbeQueue

        for request in ProbeQueue(args.pending).open_requests():
            last = request["submissions"][-1] if request["submissions"] else {}
            status = "failed" if request["failed"] else f"attempts {request['attempts']}"
            print(f"{request['checkpoint']}\t{status}\t{last.get('log', '')}")
        return 0
    from plasticity_dist.probe.job import run_probe

    run_probe(args.checkpoint, args.config, force=args.force)
    return 0


def _add_probe(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help="probe one checkpoint (what async probe jobs run), or list pending probes")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--checkpoint", help="checkpoint folder RUN/checkpoints/<tag>")
    target.add_argument("--pending", metavar="RUN", help="list the probe requests of RUN without a result")
    parser.add_argument("--config", help="experiment YAML (default: the run's config.yaml)")
    parser.add_argument("--force", action="store_true", help="replace a result made under another probe config")
    parser.set_defaults(handler=_probe)


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from plasticity_dist.demo import run_demo

    run_demo(Path(args.out), cycles=args.cycles, task_tokens=args.task_tokens)
    return 0


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="the whole pipeline at toy scale on CPU, ending in a report")
    parser.add_argument("--out", default="runs/demo", help="output folder (data, runs, report)")
    parser.add_argument("--cycles", type=int, help="cycles per run (default: configs/demo.yaml)")
    parser.add_argument("--task-tokens", type=int, help="tokens per task (default: configs/demo.yaml)")
    parser.set_defaults(handler=_demo)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="run or resume a continual or stationary run (also under accelerate launch / torchrun)"
    )
    parser.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. run_dir=runs/x")
    parser.set_defaults(handler=_train)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_models, _add_train, _add_probe, _add_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plasticity-dist", description="Measure loss of plasticity in GPT-style language models."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"plasticity-dist {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
