#!/bin/bash
#SBATCH --job-name=plasticity-12M
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=2
#SBATCH --cpus-per-task=16
#SBATCH --time=2-00:00:00
#SBATCH --signal=USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
SIZE=12M PROBLEM=continual
source "${PLASTICITY_REPO:-$SLURM_SUBMIT_DIR}/slurm/train_size.sh" "$@"
