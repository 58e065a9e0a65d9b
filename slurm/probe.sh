#!/bin/bash
# One probe job: sbatch slurm/probe.sh CHECKPOINT_DIR [CONFIG] (what the `slurm` probe executor submits,
# with partition, account, time and nodes from the experiment config's probe.slurm section). Without CONFIG
# the probe reads the config of the run that saved the checkpoint. A probe is a run of its own: stopped by
# the time-limit or a preemption signal it checkpoints, and the job is requeued to resume, as training is.
#SBATCH --job-name=plasticity-probe
#SBATCH --ntasks-per-node=1
#SBATCH --signal=USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
source "${PLASTICITY_REPO:-$SLURM_SUBMIT_DIR}/slurm/common.sh"
checkpoint=$1
config_args=()
if [[ $# -ge 2 ]]; then config_args=(--config "$2"); fi
probe_run_dir=$(python -m plasticity_dist.cli probe --checkpoint "$checkpoint" --print-run-dir)
launch_and_requeue "$probe_run_dir" probe --checkpoint "$checkpoint" "${config_args[@]}"
