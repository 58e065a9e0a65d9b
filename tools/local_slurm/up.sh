#!/usr/bin/env bash
# Bring up a real two-node Slurm cluster on localhost: munged, slurmctld and two slurmd (node1, node2).
# Everything (munge key and socket, slurm.conf, state, logs, pid files) lives in STATE_DIR, so it never
# touches a system munged or slurm. Run as root. The last line printed is the SLURM_CONF to export.
#   usage: tools/local_slurm/up.sh STATE_DIR
# Environment: LOCAL_SLURM_CPUS (CPUs per node, default nproc; may exceed it), LOCAL_SLURM_TIMEOUT (seconds
# to wait for the nodes, default 60), LOCAL_SLURM_CPU_BIND=cores (bind every task to the cores it was
# allocated with task/affinity, as clusters with TaskPluginParam=Cores do; default: no binding). Both nodes
# share this machine's CPUs. Stop it with tools/local_slurm/down.sh STATE_DIR.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 STATE_DIR" >&2
    exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "error: $0 must run as root (slurmd launches jobs as their users)" >&2
    exit 1
fi
mkdir -p "$1"
state_dir=$(cd "$1" && pwd)
conf="$state_dir/slurm.conf"
ready_timeout_s=${LOCAL_SLURM_TIMEOUT:-60}
nodes=(node1 node2)

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local missing=()
    for binary in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client; do
        command -v "${binary%%:*}" >/dev/null 2>&1 || missing+=("${binary##*:}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    echo "installing ${missing[*]} with apt-get"
    # Keep the packages' own services from starting during installation: ours run from STATE_DIR.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
    fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        >"$state_dir/apt.log" 2>&1 || rc=$?
    [[ $added_policy -eq 1 ]] && rm -f "$policy"
    if [[ $rc -ne 0 ]]; then
        echo "error: apt-get could not install ${missing[*]} (see $state_dir/apt.log):" >&2
        tail -n 5 "$state_dir/apt.log" >&2
        exit 3
    fi
}

# COUNT distinct TCP ports that nothing listens on now, on one line.
free_ports() {
    local count=$1 port chosen=" "
    while (( count > 0 )); do
        port=$((20000 + RANDOM % 30000))
        [[ $chosen == *" $port "* ]] && continue
        if ! awk 'FNR > 1 {split($2, local_address, ":"); print local_address[2]}' /proc/net/tcp /proc/net/tcp6 \
                2>/dev/null | grep -qix "$(printf '%04X' "$port")"; then
            chosen+="$port "
            count=$((count - 1))
        fi
    done
    echo $chosen
}

all_up() {
    pid_alive "$state_dir/munged.pid" && pid_alive "$state_dir/slurmctld.pid" \
        && pid_alive "$state_dir/slurmd-node1.pid" && pid_alive "$state_dir/slurmd-node2.pid"
}

if all_up; then
    echo "local slurm cluster already up in $state_dir"
    echo "export SLURM_CONF=$conf"
    exit 0
fi
for pid_file in "$state_dir"/*.pid; do
    if pid_alive "$pid_file"; then
        echo "error: part of a cluster is still running from $state_dir ($pid_file);" \
             "run tools/local_slurm/down.sh $state_dir first" >&2
        exit 1
    fi
done

show_logs() {
    for log in "$state_dir"/log/*.log; do
        [[ -e $log ]] || continue
        echo "--- $log (last 15 lines)" >&2
        tail -n 15 "$log" >&2
    done
}

# Print the message and the daemons' log tails, say how to stop what did start, exit 1.
fail() {
    echo "error: $*" >&2
    show_logs
    echo "stop what did start with: tools/local_slurm/down.sh $state_dir" >&2
    exit 1
}

install_packages
mkdir -p "$state_dir"/{munge,log,ctld,spool}
# Users other than root submit jobs through this socket: the folder is open, the key (0400) is not.
chmod 755 "$state_dir/munge"

# munge: its own key, socket, pid and log, so a system munged (if any) is left alone.
munge_key="$state_dir/munge/munge.key"
munge_socket="$state_dir/munge/munge.socket"
if [[ ! -s $munge_key ]]; then
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$munge_key"
    else
        dd if=/dev/urandom of="$munge_key" bs=1024 count=1 status=none
    fi
fi
chmod 400 "$munge_key"
rm -f "$munge_socket" "$munge_socket.lock"
munged --force --key-file="$munge_key" --socket="$munge_socket" --pid-file="$state_dir/munged.pid" \
    --log-file="$state_dir/log/munged.log" --seed-file="$state_dir/munge/munged.seed" || fail "munged did not start"

read -r ctld_port node1_port node2_port < <(free_ports 3)
machine_cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS
cpus=${LOCAL_SLURM_CPUS:-$machine_cpus}
case ${LOCAL_SLURM_CPU_BIND:-none} in
    none) task_plugin="# No cgroups in containers: track processes through /proc, no task binding.
TaskPlugin=task/none" ;;
    cores)
        # sched_setaffinity cannot bind to CPUs this machine lacks
        (( cpus <= machine_cpus )) || { echo "error: LOCAL_SLURM_CPU_BIND=cores needs LOCAL_SLURM_CPUS <= $machine_cpus" >&2; exit 2; }
        task_plugin="# Tasks bound to their allocated cores (sched_setaffinity; no cgroups in containers).
TaskPlugin=task/affinity
TaskPluginParam=Cores" ;;
    *) echo "error: LOCAL_SLURM_CPU_BIND=${LOCAL_SLURM_CPU_BIND}: expected none or cores" >&2; exit 2 ;;
esac
# Job ids from a random start: slurm/common.sh derives the rendezvous port from the job id, so two clusters
# on one host (or a job orphaned by an earlier one) would otherwise meet on the same ports from job 1 on.
first_job_id=$((1 + RANDOM % 9000))
cat >"$conf" <<CONF
# Written by tools/local_slurm/up.sh: a two-node cluster on localhost, state and logs in $state_dir.
ClusterName=localslurm
FirstJobId=$first_job_id
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$munge_socket,cred_expire=5
StateSaveLocation=$state_dir/ctld
SlurmdSpoolDir=$state_dir/spool/%n
SlurmctldPidFile=$state_dir/slurmctld.pid
SlurmdPidFile=$state_dir/slurmd-%n.pid
SlurmctldLogFile=$state_dir/log/slurmctld.log
SlurmdLogFile=$state_dir/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
$task_plugin
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
# Start requeued and newly eligible jobs within a second or two, not at the next 30-60 s pass.
SchedulerParameters=bf_interval=1,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# The configured CPUs may exceed what slurmd detects (LOCAL_SLURM_CPUS); trust the config.
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
# Finished jobs stay visible to "scontrol show job" for an hour (there is no slurmdbd for sacct).
MinJobAge=3600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=60
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# One line per finished job (also each requeue), kept after MinJobAge expires.
JobCompType=jobcomp/filetxt
JobCompLoc=$state_dir/log/jobcomp.txt
NodeName=node1 NodeAddr=127.0.0.1 Port=$node1_port CPUs=$cpus State=UNKNOWN
NodeName=node2 NodeAddr=127.0.0.1 Port=$node2_port CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=node[1-2] Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$conf

slurmctld -f "$conf" || fail "slurmctld did not start"
for node in "${nodes[@]}"; do
    mkdir -p "$state_dir/spool/$node"
    slurmd -f "$conf" -N "$node" || fail "slurmd for $node did not start"
done

deadline=$((SECONDS + ready_timeout_s))
while true; do
    # Ready: every node answers (no "*" suffix) and is idle, or busy with jobs kept in the saved state.
    ready_nodes=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 ~ /^(idle|mix|alloc)$/ {print $1}' | sort -u | wc -l)
    [[ $ready_nodes -eq ${#nodes[@]} ]] && break
    if (( SECONDS >= deadline )); then
        fail "the local slurm cluster did not come up within ${ready_timeout_s}s; sinfo says:" \
             "$(sinfo -h -N -o '%N %t' 2>&1 | tr '\n' ' ')"
    fi
    sleep 0.5
done
echo "local slurm cluster up in $state_dir: nodes ${nodes[*]}, $cpus CPUs each, partition debug"
echo "export SLURM_CONF=$conf"
