#!/usr/bin/env bash
# Stop the local Slurm cluster that tools/local_slurm/up.sh started in STATE_DIR: only the daemons named
# by the pid files there (two slurmd, slurmctld, munged) and the jobs still in that cluster, nothing else.
# State and logs are kept.
#   usage: tools/local_slurm/down.sh STATE_DIR
set -uo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 STATE_DIR" >&2
    exit 2
fi
state_dir=$1
stop_timeout_s=${LOCAL_SLURM_TIMEOUT:-30}

# The pid in PID_FILE if that process is alive and still the daemon NAME (pids get reused); else nothing.
daemon_pid() {
    local pid_file=$1 name=$2 pid
    [[ -s $pid_file ]] || return 0
    pid=$(cat "$pid_file")
    if kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
        echo "$pid"
    fi
}

# Send SIGTERM to each "PID_FILE:NAME" daemon that is running, wait for all of them to exit.
stop_daemons() {
    local entry pid_file name pid stopping=()
    for entry in "$@"; do
        pid_file=${entry%:*} name=${entry##*:}
        pid=$(daemon_pid "$pid_file" "$name")
        if [[ -n $pid ]]; then
            kill -TERM "$pid" && stopping+=("$pid:$name")
        fi
        rm -f "$pid_file"
    done
    local deadline=$((SECONDS + stop_timeout_s))
    for entry in "${stopping[@]}"; do
        pid=${entry%:*} name=${entry##*:}
        while kill -0 "$pid" 2>/dev/null; do
            if (( SECONDS >= deadline )); then
                echo "warning: $name ($pid) ignored SIGTERM for ${stop_timeout_s}s; sending SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null
            fi
            sleep 0.1
        done
        echo "stopped $name ($pid)"
    done
}

# Cancel this cluster's jobs first: slurmd leaves running job steps behind when it stops.
if [[ -n $(daemon_pid "$state_dir/slurmctld.pid" slurmctld) ]]; then
    export SLURM_CONF=$state_dir/slurm.conf
    job_ids=$(squeue -h -o %i 2>/dev/null)
    if [[ -n $job_ids ]]; then
        scancel $job_ids 2>/dev/null
        deadline=$((SECONDS + stop_timeout_s))
        while [[ -n $(squeue -h -o %i 2>/dev/null) ]] && (( SECONDS < deadline )); do sleep 0.2; done
        echo "cancelled jobs $(echo $job_ids)"
    fi
fi

# The Slurm daemons together (slurmd kills its jobs' steps), then munge, which both used.
slurm_daemons=("$state_dir/slurmctld.pid:slurmctld")
for pid_file in "$state_dir"/slurmd-*.pid; do
    [[ -e $pid_file ]] && slurm_daemons+=("$pid_file:slurmd")
done
stop_daemons "${slurm_daemons[@]}"
stop_daemons "$state_dir/munged.pid:munged"
exit 0
