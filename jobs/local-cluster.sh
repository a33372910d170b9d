#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying boltzflow's job
# scripts on a workstation and for the test suite.
#
#   jobs/local-cluster.sh start   # munged + slurmctld + slurmd on localhost
#   eval "$(jobs/local-cluster.sh env)"   # SLURM_CONF for sbatch/squeue/...
#   jobs/local-cluster.sh stop
#
# Everything (keys, config, state, logs, sockets) lives in $BOLTZFLOW_SLURM_DIR
# (default /tmp/boltzflow-slurm-$USER); nothing under /etc is touched. Needs
# Debian's slurm-wlm and munge (apt-get install slurm-wlm munge). Daemons run as
# the calling user (root in containers). ProctrackType=proctrack/linuxproc and
# TaskPlugin=task/none work without cgroups. Requeued jobs may start again
# after 20 s (cred_expire; SLURM's default is 120 s).
set -euo pipefail

dir=${BOLTZFLOW_SLURM_DIR:-/tmp/boltzflow-slurm-$(id -un)}
conf=$dir/slurm.conf
cpus=${BOLTZFLOW_SLURM_CPUS:-$(nproc)}
# Ports away from the defaults (6817/6818), overridable for parallel clusters.
ctld_port=${BOLTZFLOW_SLURM_CTLD_PORT:-16817}
d_port=${BOLTZFLOW_SLURM_D_PORT:-16818}

say() { echo "local-cluster: $*" >&2; }

write_config() {
  mkdir -p "$dir"/{state,spool,log,munge,pmix}
  chmod 700 "$dir/munge"
  if [ ! -f "$dir/munge/munge.key" ]; then
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
  fi
  local user mem
  user=$(id -un)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  cat > "$conf" <<CONF
ClusterName=boltzflow-local
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=20
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=defer_batch
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  # PMIx's per-step directories (spmix_appdir_UID_JOB.STEP) go here, not in /tmp:
  # a cluster killed mid-step leaves its directory behind, and a later cluster
  # whose job IDs start again at 1 would fail that step's launch on it
  # ("Cannot create client cli tmpdir ... File exists").
  echo "PMIxCliTmpDirBase=$dir/pmix" > "$dir/mpi.conf"
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  command -v slurmctld > /dev/null || { say "slurmctld not found: apt-get install slurm-wlm munge"; exit 1; }
  write_config
  if ! running "$dir/munge/munged.pid"; then
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
      --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munge.seed"
  fi
  export SLURM_CONF=$conf
  running "$dir/slurmctld.pid" || slurmctld -f "$conf" -i
  if ! running "$dir/slurmd.pid"; then
    rm -rf "$dir"/pmix/spmix_appdir_* # left by steps of a cluster that was killed; no step runs now
    slurmd -f "$conf" -N localhost
  fi
  for _ in $(seq 1 60); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      say "up: $(sinfo -h -N -o '%N %c CPUs %T') (SLURM_CONF=$conf)"
      return 0
    fi
    sleep 1
  done
  say "the node did not come up; logs in $dir/log"
  tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  exit 1
}

stop() {
  export SLURM_CONF=$conf
  if [ -f "$conf" ]; then scancel --full --quiet --user="$(id -un)" 2>/dev/null || true; fi
  for p in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    if running "$p"; then
      kill "$(cat "$p")" 2>/dev/null || true
      for _ in $(seq 1 20); do running "$p" || break; sleep 0.5; done
      running "$p" && kill -9 "$(cat "$p")" 2>/dev/null || true
    fi
  done
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$conf" ;;
  status) export SLURM_CONF=$conf; sinfo; squeue ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
