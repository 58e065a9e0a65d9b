#!/bin/bash
# One probe job: sbatch slurm/probe.sh CHECKPOINT_DIR [CONFIG] (what the `slurm` probe executor submits,
# with partition, account, time and nodes from the experiment config's probe.slurm section). Without CONFIG
# the probe reads the config of the run that saved the checkpoint.
#SBATCH --job-name=plasticity-probe
#SBATCH --ntasks-per-node=1
source "${PLASTICITY_REPO:-$SLURM_SUBMIT_DIR}/slurm/common.sh"
checkpoint=$1
config_args=()
if [[ $# -ge 2 ]]; then config_args=(--config "$2"); fi
launch_accelerate probe --checkpoint "$checkpoint" "${config_args[@]}"
