import os
import sys
from pathlib import Path

pytest_plugins = ["slurm_cluster"]  # the `local_slurm` fixture: a real two-node Slurm cluster on localhost

# Every process the tests start (trainers, probes, Slurm jobs) sees the virtual environment's tools first,
# as an activated environment would; DeepSpeed rebuilds its JIT ops whenever the `ninja` it finds changes.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
