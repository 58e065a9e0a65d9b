"""The package's one logger: on the main process, rich on a terminal and plain lines in log files;
warnings only on the other ranks. Logs go to stderr, so stdout stays for a command's results.
"""

from __future__ import annotations

import logging
import os
import sys

from rich.console import Console
from rich.logging import RichHandler

LOGGER_NAME = "plasticity_dist"


def is_main_process() -> bool:
    """True on global rank 0 (read from the launcher's environment, so usable before torch.distributed)."""
    return int(os.environ.get("RANK", "0")) == 0


def _handler() -> logging.Handler:
    if sys.stderr.isatty():
        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # a Slurm log or a pipe: one unwrapped line per record, greppable
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    return handler


def get_logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        logger.addHandler(_handler())
        logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)
        logger.propagate = False
    return logger
