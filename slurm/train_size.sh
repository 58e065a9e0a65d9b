# The body of every slurm/train_<size>.sh and slurm/train_stationary_<size>.sh: they differ only in their
# #SBATCH lines, SIZE and PROBLEM (continual, or stationary for the stationary control).
# Usage inside one: SIZE=314M; source "${PLASTICITY_REPO:-$SLURM_SUBMIT_DIR}/slurm/train_size.sh" "$@"
# Extra arguments are config overrides (sbatch slurm/train_314M.sh optimizer.lr=3e-4); RUN_DIR and
# CONFIG may be set in the environment (sbatch --export=ALL,RUN_DIR=...).
# SEED=i trains replicate i of a config's `replicates` (seed=i data.seed=i, in runs/<problem>-<size>-seed<i>
# unless RUN_DIR says otherwise); replicate 0 is the plain run (the configs' seed 0). For replicates: 3:
#   sbatch slurm/train_5M.sh; for i in 1 2; do SEED=$i sbatch slurm/train_5M.sh; done
source "${PLASTICITY_REPO:-$SLURM_SUBMIT_DIR}/slurm/common.sh"
PROBLEM=${PROBLEM:-continual}  # each train_<size>.sh sets it, so an exported PROBLEM does not leak in
if [[ -n ${SEED:-} ]]; then
    set -- "seed=$SEED" "data.seed=$SEED" "$@"
    RUN_DIR=${RUN_DIR:-runs/$PROBLEM-$SIZE-seed$SEED}
fi
train_and_requeue "${CONFIG:-configs/$PROBLEM-$SIZE.yaml}" "${RUN_DIR:-runs/$PROBLEM-$SIZE}" "$@"
