#!/usr/bin/env bash
# Start or stop a throwaway single-node SLURM cluster for the test suite (tests/slurm).
#   scripts/test-slurm.sh start DIR   -> prints the path of its slurm.conf (use it as SLURM_CONF)
#   scripts/test-slurm.sh stop DIR
# Needs root and Debian's slurm-wlm + munge (scripts/ensure-system-deps.sh installs them). Every
# file lives in DIR: a private munged (own key and socket), slurmctld and slurmd on free ports,
# each started with setsid in its own session, logs in DIR/*.log. Nothing outside DIR is touched;
# `stop` cancels the cluster's jobs, then ends the daemons (by the pids recorded in DIR) and any
# process left in their sessions (job steps).
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds
  local until=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$until" ] || return 1
    sleep 0.2
  done
}

start_daemon() {  # start_daemon NAME COMMAND...: in its own session, log to DIR/NAME.out
  # from DIR/spool: job steps (slurmstepd, own sessions) inherit it, so `stop` can find them
  (cd "$dir/spool" && exec setsid "$@" >"$dir/$1.out" 2>&1 </dev/null) &
  echo $! >"$dir/$1.sid"
}

case "$cmd" in
start)
  [ "$(id -u)" -eq 0 ] || { echo "test-slurm: needs root (slurmd runs jobs as any user)" >&2; exit 1; }
  for exe in munged slurmctld slurmd sbatch; do
    command -v "$exe" >/dev/null || { echo "test-slurm: $exe is missing (apt-get install slurm-wlm munge)" >&2; exit 1; }
  done
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
  chmod 0755 "$dir"  # munged (user munge) must reach its directory
  chown munge:munge "$dir/munge"
  chmod 0755 "$dir/munge"
  # a private munge key and socket: no system-wide munged is needed or disturbed
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
  chown munge:munge "$dir/munge/munge.key"
  chmod 0400 "$dir/munge/munge.key"
  runuser -u munge -- /usr/sbin/munged --key-file="$dir/munge/munge.key" \
    --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" \
    || { cat "$dir/munge/munged.log" >&2; exit 1; }
  wait_for 10 test -S "$dir/munge/munge.socket" || { echo "test-slurm: munged did not start" >&2; exit 1; }
  # the node is this machine under its short host name (what slurmd looks itself up as)
  host=$(python3 -c 'import socket; print(socket.gethostname().split(".")[0])')
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  cat >"$dir/slurm.conf" <<EOF
ClusterName=rtctest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ReturnToService=2
KillWait=10
MinJobAge=600
SchedulerParameters=sched_interval=1,sched_min_interval=100000,bf_interval=1
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 Sockets=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=8000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  echo "Name=gpu File=/dev/null" >"$dir/gres.conf"
  export SLURM_CONF="$dir/slurm.conf"
  start_daemon slurmctld slurmctld -D -f "$dir/slurm.conf"
  start_daemon slurmd slurmd -D -f "$dir/slurm.conf"
  node_idle() { [ "$(sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ]; }
  if ! wait_for 30 node_idle; then
    echo "test-slurm: the node did not become idle; logs:" >&2
    tail -n 20 "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/*.out >&2 || true
    exit 1
  fi
  echo "$dir/slurm.conf"
  ;;
stop)
  [ -d "$dir" ] || exit 0
  export SLURM_CONF="$dir/slurm.conf"
  if [ -f "$dir/slurmctld.sid" ] && kill -0 "$(cat "$dir/slurmctld.sid")" 2>/dev/null; then
    scancel --full --signal=KILL --user="$(id -un)" >/dev/null 2>&1 || true
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
    no_jobs() { [ -z "$(squeue -h -o %i 2>/dev/null)" ]; }
    wait_for 10 no_jobs || true
  fi
  for name in slurmd slurmctld; do
    if [ -f "$dir/$name.sid" ]; then
      sid=$(cat "$dir/$name.sid")
      kill -TERM "$sid" 2>/dev/null || true
    fi
  done
  sleep 0.5
  for name in slurmd slurmctld; do
    if [ -f "$dir/$name.sid" ]; then
      sid=$(cat "$dir/$name.sid")
      # what is left in that session: the daemon and its job steps (slurmstepd, jobs)
      for pid in $(ps -e -o pid=,sid= | awk -v s="$sid" '$2 == s {print $1}'); do
        kill -KILL "$pid" 2>/dev/null || true
      done
    fi
  done
  # job steps that outlived their daemon: slurmstepd runs from DIR/spool
  for proc in /proc/[0-9]*; do
    if [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$dir/spool" ]; then
      kill -KILL "${proc#/proc/}" 2>/dev/null || true
    fi
  done
  if [ -f "$dir/munge/munged.pid" ]; then
    mpid=$(cat "$dir/munge/munged.pid")
    kill -TERM "$mpid" 2>/dev/null || true
    munged_gone() { ! kill -0 "$mpid" 2>/dev/null; }
    wait_for 5 munged_gone || kill -KILL "$mpid" 2>/dev/null || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2; exit 2;;
esac
