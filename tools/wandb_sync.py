#!/usr/bin/env python
"""Upload a run's offline W&B attempts (RUN/wandb/offline-run-*) as one W&B run, in the order that keeps
every attempt's history: `python tools/wandb_sync.py RUN_DIR [--dry-run]` on a machine with internet.

With the installed wandb >= 0.30 that is one `wandb sync` of every folder; older versions sync the first
folder, then each later one with `wandb sync --append --id ID`, in time order.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from importlib.metadata import version

from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.train.wandb_sink import sync_commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run directory trained with wandb.mode=offline")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    args = parser.parse_args(argv)
    try:
        commands = sync_commands(RunLayout(args.run_dir), version("wandb"))
    except FileNotFoundError as error:
        print(f"tools/wandb_sync.py: {error}", file=sys.stderr)
        return 2
    for command in commands:
        print(shlex.join(command), flush=True)
        if not args.dry_run and subprocess.run(command).returncode != 0:
            print(f"tools/wandb_sync.py: {shlex.join(command)} failed; the later folders were not synced",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
