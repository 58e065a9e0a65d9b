pytest_plugins = ["slurm_cluster"]  # the `local_slurm` fixture: a real two-node Slurm cluster on localhost
