"""The package's one logger: rich output on the main process, warnings only elsewhere."""

from __future__ import annotations

import logging
import os

from rich.logging import RichHandler

LOGGER_NAME = "plasticity_dist"


def is_main_process() -> bool:
    """True on global rank 0 (read from the launcher's environment, so usable before torch.distributed)."""
    return int(os.environ.get("RANK", "0")) == 0


def get_logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)
        logger.propagate = False
    return logger
