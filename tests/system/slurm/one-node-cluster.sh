#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests:  one-node-cluster.sh start|stop DIR
# start: installs slurm-wlm and munge if missing (Debian), starts munged, slurmctld and slurmd
# with a config in DIR (DIR/slurm.conf: export SLURM_CONF to use it), and waits for the node to
# be idle. Exit 3: Slurm cannot be had here (no root, no packages, daemons refuse to start).
set -euo pipefail
cmd="$1"
dir="$(realpath -m "$2")"
if [ "$cmd" = stop ]; then
  for pidfile in "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 0.5
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 3; }
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
     --no-install-recommends slurm-wlm munge) >&2 || { echo "cannot install slurm-wlm and munge" >&2; exit 3; }
fi
mkdir -p "$dir"/state "$dir"/spool "$dir"/munge
host="$(hostname -s)"
cpus="$(nproc)"
mem="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))"
# Ports picked from the directory's name so that parallel clusters do not meet.
base=$(( 20000 + $(echo "$dir" | cksum | cut -d' ' -f1) % 20000 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=segue-test
SlurmctldHost=$host
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=segue Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
: # cgroups: Slurm 22.05 probes them itself
export SLURM_CONF="$dir/slurm.conf"
munged --socket="$dir/munge/munge.socket" --pid-file="$dir/munged.pid" \
  --log-file="$dir/munged.log" --seed-file="$dir/munge/seed" --force >&2 || { echo "munged would not start" >&2; exit 3; }
slurmctld -f "$SLURM_CONF" >&2 || { echo "slurmctld would not start" >&2; exit 3; }
slurmd -f "$SLURM_CONF" >&2 || { echo "slurmd would not start" >&2; exit 3; }
for _ in $(seq 1 100); do
  if sinfo -h -N -o "%T" 2>/dev/null | grep -qE "idle|mixed"; then exit 0; fi
  sleep 0.2
done
echo "the node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
exit 3
