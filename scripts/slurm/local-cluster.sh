#!/usr/bin/env bash
# scripts/slurm/local-cluster.sh — a real one-node SLURM cluster on localhost, for tests and CI.
#
#   scripts/slurm/local-cluster.sh start [STATE_DIR]   # then: export SLURM_CONF=STATE_DIR/slurm.conf
#   scripts/slurm/local-cluster.sh stop  [STATE_DIR]
#   scripts/slurm/local-cluster.sh status [STATE_DIR]
#
# STATE_DIR (default $TG_SLURM_DIR or /tmp/truthgpt-slurm) holds slurm.conf, the controller's
# state, spool, pid and log files: nothing outside it is written except munge's key and socket.
# Must run as root (slurmd starts jobs as their users). Installs nothing; the packages it needs
# (Debian 12; .ci/run installs them):
#   apt-get install -y --no-install-recommends slurm-wlm munge openmpi-bin libopenmpi-dev
# Facts behind the choices below: /work/shared/SLURM.md (no systemd, cgroup v1, PMIx-only
# OpenMPI). A requeued job may start again only once its credentials expire: cred_expire=10 and a
# scheduler that looks every second restart it ~11 s after the requeue instead of 1-3 minutes.
#
# Several nodes on this one machine (tests/netns/slurm.sh): TG_SLURM_NODES="NAME=ADDR NAME=ADDR ..."
# and TG_SLURM_ON, a command such that `$TG_SLURM_ON NAME CMD...` runs CMD on node NAME (e.g. in its
# own network namespace, with hostname NAME). One slurmd per node, the controller on the first;
# spool, pid and log files and TmpFS (where srun --mpi=pmix puts its per-step directories) per node.
# Clients (sinfo, sbatch, scontrol) must then run on a node as well: `$TG_SLURM_ON NAME sbatch ...`.
set -euo pipefail

cmd=${1:-}
state=${2:-${TG_SLURM_DIR:-/tmp/truthgpt-slurm}}
port=${TG_SLURM_PORT:-6817} # slurmctld; slurmd uses port+1

die() { echo "local-cluster: $*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.1 s until COMMAND succeeds.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.1
  done
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

nodes=${TG_SLURM_NODES:-}
first=${nodes%%=*}
first_addr=${nodes#*=}
first_addr=${first_addr%% *}
# on CMD...: runs CMD where the controller is (the first node, when there are several).
on() {
  if [[ -n $nodes ]]; then "${TG_SLURM_ON:?TG_SLURM_NODES needs TG_SLURM_ON}" "$first" "$@"; else "$@"; fi
}

write_conf() {
  local host node mem_kb real_mb ctld per="" tmpfs="" n
  host=$(hostname -s)
  # The node's CPU layout exactly as slurmd sees it (else "Node reconfigured socket/core
  # boundaries" drains it); RealMemory a little below MemTotal.
  node=$(slurmd -C | head -n 1 | sed -e 's/ RealMemory=[0-9]*//' -e "s/^NodeName=[^ ]*/NodeName=$host/")
  mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  real_mb=$((mem_kb / 1024 * 9 / 10))
  node+=" RealMemory=$real_mb State=UNKNOWN"
  ctld=$host
  if [[ -n $nodes ]]; then
    # Each node offers all of this machine's CPUs and memory: the jobs are tiny.
    ctld="$first($first_addr)"
    per=.%n
    tmpfs="TmpFS=$state/tmp.%n"
    local layout=${node#NodeName=* }
    node=""
    for n in $nodes; do
      node+="NodeName=${n%%=*} NodeAddr=${n#*=} $layout"$'\n'
      mkdir -p "$state/spool.${n%%=*}" "$state/tmp.${n%%=*}"
    done
  fi
  cat >"$state/slurm.conf" <<EOF
# written by scripts/slurm/local-cluster.sh
ClusterName=truthgpt-local
SlurmctldHost=$ctld
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/jobcomp.txt
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool$per
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd$per.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd$per.log
SlurmctldDebug=info
SlurmdDebug=info
$tmpfs
$node
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "local-cluster: munged already running; using it"
    return 0
  fi
  local key=/etc/munge/munge.key
  if [[ ! -s $key ]]; then
    mungekey --create --keyfile="$key" 2>/dev/null || mungekey -c -k "$key"
  fi
  chown munge:munge "$key"
  chmod 400 "$key"
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  # munged writes its own pid file; remember that we started it so stop stops it.
  touch "$state/munged.started-by-us"
  wait_for 10 munged bash -c 'munge -n | unmunge' || die "munged did not come up"
}

start() {
  [[ $(id -u) == 0 ]] || die "must run as root"
  command -v slurmctld >/dev/null || die "slurmctld not installed (apt-get install slurm-wlm munge)"
  if pid_alive "$state/slurmctld.pid"; then die "already running (state $state)"; fi
  rm -rf "$state"
  mkdir -p "$state/ctld" "$state/spool"
  write_conf
  export SLURM_CONF=$state/slurm.conf
  start_munge
  on /usr/sbin/slurmctld -f "$SLURM_CONF" || die "slurmctld failed; see $state/slurmctld.log"
  wait_for 20 slurmctld on bash -c 'scontrol ping | grep -q UP' ||
    die "slurmctld not UP; see $state/slurmctld.log"
  if [[ -n $nodes ]]; then
    for n in $nodes; do
      "$TG_SLURM_ON" "${n%%=*}" /usr/sbin/slurmd -f "$SLURM_CONF" -N "${n%%=*}" ||
        die "slurmd of ${n%%=*} failed; see $state/slurmd.${n%%=*}.log"
    done
  else
    /usr/sbin/slurmd -f "$SLURM_CONF" || die "slurmd failed; see $state/slurmd.log"
  fi
  wait_for 30 "nodes idle" on bash -c '[[ $(sinfo -h -o %T | sort -u) == idle ]]' ||
    die "node(s) not idle: $(on sinfo -h -o '%N %T %E' 2>&1); see $state/slurmd*.log"
  echo "local-cluster: up (state $state). export SLURM_CONF=$SLURM_CONF"
}

stop_pid() { # stop_pid PIDFILE NAME: TERM, then KILL after 10 s
  local f=$1 pid
  [[ -s $f ]] || return 0
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  export SLURM_CONF=$state/slurm.conf
  # Jobs first, so that their steps do not outlive the daemons.
  if pid_alive "$state/slurmctld.pid"; then
    on scancel --full --quiet $(on squeue -h -o %i 2>/dev/null) 2>/dev/null || true
  fi
  stop_pid "$state/slurmd.pid"
  for n in $nodes; do stop_pid "$state/slurmd.${n%%=*}.pid"; done
  stop_pid "$state/slurmctld.pid"
  if [[ -e $state/munged.started-by-us ]]; then
    stop_pid /run/munge/munged.pid
    rm -f "$state/munged.started-by-us"
  fi
  echo "local-cluster: stopped (logs kept in $state)"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  status)
    export SLURM_CONF=$state/slurm.conf
    pid_alive "$state/slurmctld.pid" || die "not running (state $state)"
    on sinfo
    on squeue
    ;;
  *) echo "usage: $0 start|stop|status [STATE_DIR]" >&2; exit 2 ;;
esac
