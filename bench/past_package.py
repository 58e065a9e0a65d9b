"""Run a benchmark script against the package as a past commit had it, for old-beside-new comparisons.

`git archive REF plasticity_dist` is unpacked into a temporary folder that goes first on PYTHONPATH of a
subprocess running the same script (which prints JSON there); the subprocess sees the same simulated data
because the scripts draw it from their own seeds, not from the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]


def run_in_past_package(ref: str, script: str, arguments: list[str]) -> Any:
    """The JSON that `script arguments` prints with the package of commit `ref`."""
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", ref, "plasticity_dist"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        environment = {**os.environ, "PYTHONPATH": folder}
        finished = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True,
                                  env=environment)
        if finished.returncode:
            raise RuntimeError(f"{script} with the package of {ref} failed:\n{finished.stderr[-2000:]}")
        return json.loads(finished.stdout)
