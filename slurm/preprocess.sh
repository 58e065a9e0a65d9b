#!/bin/bash
# Preprocess one dataset as a job array, one slice of the output shards per array task, e.g.
#   sbatch --array=0-15 slurm/preprocess.sh --source hf:HuggingFaceFW/fineweb-2:vie_Latn --out data/study/vi \
#          --tokens 5e9 --seq-len 2048 --workers 8
# The task that completes the dataset (the manifest appears) verifies every shard.
#SBATCH --job-name=plasticity-preprocess
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --output=logs/%x-%A_%a.out
source "${PLASTICITY_REPO:-$SLURM_SUBMIT_DIR}/slurm/common.sh"
out=""
for ((i = 1; i <= $#; i++)); do
    case ${!i} in
        --out) next=$((i + 1)); out=${!next-} ;;
        --out=*) out=${!i#--out=} ;;
    esac
done
[[ -n $out ]] || { echo "slurm/preprocess.sh: --out DIR is required" >&2; exit 2; }
plasticity-dist preprocess "$@" --shard-index "${SLURM_ARRAY_TASK_ID:-0}" --num-shards "${SLURM_ARRAY_TASK_COUNT:-1}"
if [[ -f $out/manifest.json ]]; then
    plasticity-dist verify "$out"
fi
