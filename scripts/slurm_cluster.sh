#!/usr/bin/env bash
# A one-node SLURM test cluster on this machine: scripts/slurm_cluster.sh start|stop|status|env
#
#   start   install slurm-wlm and munge with apt-get when missing (as root), write slurm.conf and a
#           munge key into the state directory, start munged, slurmctld and slurmd, wait until the
#           node is idle; does nothing if the cluster already answers. Prints the environment the
#           SLURM commands need (one `export SLURM_CONF=...` line): `eval "$(scripts/slurm_cluster.sh start)"`.
#   stop    stop the three daemons started from the state directory (by their pid files).
#   status  exit 0 and print `sinfo` when the cluster answers, else exit 1.
#   env     print the environment line only.
#
# Everything lives in $SLURM_TEST_DIR (default /tmp/prefix_rft_slurm): config, munge key and socket,
# spool and state directories, logs. One node, named after this machine, with its CPU count; one
# partition `debug`; no accounting storage (`sacct` is unavailable: the harness reads job states
# from squeue and `scontrol show job`). Ports: $SLURM_TEST_PORT (slurmctld) and the next (slurmd).
set -euo pipefail

STATE=${SLURM_TEST_DIR:-/tmp/prefix_rft_slurm}
PORT=${SLURM_TEST_PORT:-6817}
CONF=$STATE/slurm.conf
NODE=$(hostname -s)

log() { echo "slurm_cluster: $*" >&2; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        log "slurm-wlm and munge are missing; install them as root (apt-get install slurm-wlm munge)"
        exit 1
    fi
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq slurm-wlm munge >&2
}

write_config() {
    mkdir -p "$STATE/munge" "$STATE/ctld" "$STATE/d" "$STATE/logs"
    chmod 700 "$STATE/munge"
    [ -s "$STATE/munge/munge.key" ] || { dd if=/dev/urandom bs=1 count=1024 of="$STATE/munge/munge.key" 2>/dev/null; }
    chmod 400 "$STATE/munge/munge.key"
    local cpus memory
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$CONF" <<EOF
# written by scripts/slurm_cluster.sh: a one-node test cluster
ClusterName=prefixrft
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=$(id -un)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/logs/slurmctld.log
SlurmdLogFile=$STATE/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# a requeued or cancelled job's processes get SIGKILL 5 s after SIGTERM (default 30 s)
KillWait=5
# finished jobs stay visible to squeue/scontrol for 10 minutes
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

answers() { SLURM_CONF=$CONF timeout 5 sinfo -h >/dev/null 2>&1; }

start() {
    install_packages
    if [ -f "$CONF" ] && pid_alive "$STATE/slurmctld.pid" && pid_alive "$STATE/slurmd.pid" && answers; then
        echo "export SLURM_CONF=$CONF"
        return
    fi
    stop_daemons
    write_config
    pid_alive "$STATE/munge/munged.pid" || munged --force --socket="$STATE/munge/munge.socket" \
        --key-file="$STATE/munge/munge.key" --pid-file="$STATE/munge/munged.pid" \
        --log-file="$STATE/logs/munged.log" --seed-file="$STATE/munge/munge.seed"
    slurmctld -f "$CONF" -i
    slurmd -f "$CONF"
    wait_idle
    echo "export SLURM_CONF=$CONF"
}

wait_idle() {
    local state=""
    for _ in $(seq 60); do
        state=$(SLURM_CONF=$CONF timeout 5 sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
        case $state in idle* | mix* | alloc*) return ;; esac
        sleep 0.5
    done
    log "the node did not come up (state '$state'); logs in $STATE/logs"
    tail -n 20 "$STATE/logs/slurmctld.log" "$STATE/logs/slurmd.log" >&2 || true
    exit 1
}

stop_daemons() {
    local name file pid
    for name in slurmd slurmctld munge/munged; do
        file=$STATE/$name.pid
        pid_alive "$file" || continue
        pid=$(cat "$file")
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        rm -f "$file"
    done
    return 0
}

status() {
    if [ -f "$CONF" ] && answers; then
        SLURM_CONF=$CONF sinfo
        echo "export SLURM_CONF=$CONF"
    else
        log "no cluster answers (state directory $STATE)"
        exit 1
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop_daemons ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
