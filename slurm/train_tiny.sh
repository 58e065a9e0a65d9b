#!/bin/bash
# CPU-only toy size for the local test cluster (tools/local_slurm) and for trying the Slurm path.
#SBATCH --job-name=plasticity-tiny
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:30:00
#SBATCH --signal=USR1@60
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
SIZE=tiny PROBLEM=continual
source "${PLASTICITY_REPO:-$SLURM_SUBMIT_DIR}/slurm/train_size.sh" "$@"
