# Shared by every job script in slurm/: turns Slurm's environment into a launch. Source it, then call
# `launch_accelerate ARGS...` (one `accelerate launch` per node running `plasticity_dist.cli ARGS...`).
#
# Overrides (environment):
#   PLASTICITY_REPO          checkout to run from (default: the folder sbatch was called from)
#   PLASTICITY_VENV          virtual environment (default: $PLASTICITY_REPO/.venv)
#   PLASTICITY_MASTER_ADDR   rendezvous host, for clusters whose host names do not resolve
#                            (default: the first host of SLURM_JOB_NODELIST)
#   PLASTICITY_MASTER_PORT   rendezvous port (default: 10000 + job id mod 10000)
#   PLASTICITY_PROCS_PER_NODE processes per node (default: GPUs on the node, or 1 without GPUs)
#   PLASTICITY_ACCELERATE_CONFIG accelerate config (default: configs/accelerate/multi_node.yaml)
set -euo pipefail

PLASTICITY_REPO=${PLASTICITY_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
PLASTICITY_VENV=${PLASTICITY_VENV:-$PLASTICITY_REPO/.venv}
cd "$PLASTICITY_REPO"
export PATH="$PLASTICITY_VENV/bin:$PATH"

NNODES=${SLURM_JOB_NUM_NODES:-1}
if [[ -n ${PLASTICITY_PROCS_PER_NODE:-} ]]; then
    PROCS_PER_NODE=$PLASTICITY_PROCS_PER_NODE
elif [[ -n ${SLURM_GPUS_ON_NODE:-} ]]; then
    PROCS_PER_NODE=$SLURM_GPUS_ON_NODE
else
    PROCS_PER_NODE=1
fi
MASTER_ADDR=${PLASTICITY_MASTER_ADDR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)}
MASTER_PORT=${PLASTICITY_MASTER_PORT:-$((10000 + ${SLURM_JOB_ID:-0} % 10000))}
ACCELERATE_CONFIG=${PLASTICITY_ACCELERATE_CONFIG:-configs/accelerate/multi_node.yaml}
PREEMPTED_MARKER=preempted  # written into the run directory by a trainer stopped by a signal
# Since Slurm 22.05 a step does not inherit the job's --cpus-per-task (nor reads SLURM_CPUS_PER_TASK): without
# it, a cluster that binds tasks to cores runs a node's ranks and their loader workers on one CPU.
STEP_CPUS=${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK}

echo "job ${SLURM_JOB_ID:-none} (restart ${SLURM_RESTART_COUNT:-0}): $NNODES node(s) x $PROCS_PER_NODE process(es)," \
     "${SLURM_CPUS_PER_TASK:-the default} CPU(s) per node, rendezvous $MASTER_ADDR:$MASTER_PORT, repo $PLASTICITY_REPO"

# One `accelerate launch` per node. The machine rank must expand on each node, hence the escaped
# \$SLURM_NODEID inside the single srun command (accelerate #2816). Each launcher ignores SIGUSR1, which
# Slurm's --signal sends to every process of the step: only the training ranks act on it (they install
# their own handler), so the launchers survive to see the ranks checkpoint and exit.
launch_accelerate() {
    local args
    printf -v args '%q ' "$@"
    srun --nodes="$NNODES" --ntasks-per-node=1 $STEP_CPUS --kill-on-bad-exit=1 bash -c "trap '' USR1; exec accelerate launch \
        --config_file $ACCELERATE_CONFIG --num_machines $NNODES --num_processes $((NNODES * PROCS_PER_NODE)) \
        --machine_rank \$SLURM_NODEID --main_process_ip $MASTER_ADDR --main_process_port $MASTER_PORT \
        -m plasticity_dist.cli $args"
}

# Run `plasticity_dist.cli ARGS...` for the run in RUN_DIR (a training run, or a probe's run in
# RUN/probes/<tag>); when it was stopped by a signal (time limit, preemption) it has checkpointed and left a
# marker: requeue the job to resume.
launch_and_requeue() {
    local run_dir=$1
    shift
    rm -f "$run_dir/$PREEMPTED_MARKER"
    local status=0
    launch_accelerate "$@" || status=$?
    if [[ -f $run_dir/$PREEMPTED_MARKER ]]; then
        echo "stopped by a signal after a checkpoint: requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID"
        exit 0
    fi
    exit "$status"
}

# Train with `train --config CONFIG run_dir=RUN_DIR OVERRIDES...`, requeued when stopped by a signal.
train_and_requeue() {
    local config=$1 run_dir=$2
    shift 2
    launch_and_requeue "$run_dir" train --config "$config" "run_dir=$run_dir" "$@"
}
