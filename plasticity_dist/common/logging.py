"""The package's one logger: on the main process, rich on a terminal and plain lines in log files;
warnings only on the other ranks. Logs go to stderr, so stdout stays for a command's results.
`quiet_dependencies` keeps our dependencies' known chatter out of them.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

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


def _not_accelerator_detection(record: logging.LogRecord) -> bool:
    """False for DeepSpeed's messages about which accelerator it detected (its errors pass)."""
    return record.module != "real_accelerator" or record.levelno >= logging.ERROR


def quiet_dependencies() -> None:
    """Drop what our dependencies print that no user of ours can act on, before they are imported.

    DeepSpeed warns at import, on stdout, whenever it finds no GPU ("Setting accelerator to CPU"), and
    DeepSpeed's collectives call torch.distributed functions that torch deprecates (a FutureWarning per
    rank). Their other warnings, their errors and ours still show.
    """
    # a filter, not a level: DeepSpeed sets its logger's level when it creates the logger
    logging.getLogger("DeepSpeed").addFilter(_not_accelerator_detection)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed\.")
