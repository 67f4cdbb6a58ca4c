#!/usr/bin/env bash
# Start a real Slurm on this machine: slurmctld plus two pretend nodes (node1, node2) served by
# two slurmd daemons on one host, munge for authentication, no accounting database (job
# completions go to a text file that `sacct -c` reads).
#
# Idempotent: installs slurm-wlm and munge only when missing (Debian packages, needs root),
# writes /etc/slurm/slurm.conf only when it differs, starts only the daemons that are not
# running, and returns once both nodes are idle. The Slurm tests of aibench-slurm and .ci/run
# use it.
#
#   scripts/slurm-up.sh            start (or check) the cluster
#   scripts/slurm-up.sh --status   print sinfo and exit
set -euo pipefail

if [ "${1:-}" = "--status" ]; then
  exec sinfo -N -o '%N %T %c %m'
fi

say() { echo "slurm-up: $*" >&2; }
die() { say "$*"; exit 3; }

[ "$(id -u)" = 0 ] || die "run as root (installs packages, starts slurmctld, slurmd and munged)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v sbatch >/dev/null || ! command -v munge >/dev/null; then
  say "installing slurm-wlm and munge"
  # Another apt run may hold the lock; wait for it rather than fail.
  apt_wait=(-o DPkg::Lock::Timeout=900)
  apt-get "${apt_wait[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_wait[@]}" install -y -qq slurm-wlm munge >/dev/null
fi

H=$(hostname -s)
conf=$(mktemp)
trap 'rm -f "$conf"' EXIT
cat >"$conf" <<EOF
# Written by aibench scripts/slurm-up.sh: one host pretending to be two nodes.
ClusterName=ci
SlurmctldHost=$H
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
MinJobAge=300
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd-%n
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldPidFile=/run/slurmctld.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
NodeName=node1 NodeHostname=$H NodeAddr=127.0.0.1 Port=6818 CPUs=1 RealMemory=1000 State=UNKNOWN
NodeName=node2 NodeHostname=$H NodeAddr=127.0.0.1 Port=6819 CPUs=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p /etc/slurm /var/spool/slurmctld /var/log/slurm
changed=0
if ! cmp -s "$conf" /etc/slurm/slurm.conf; then
  install -m 0644 "$conf" /etc/slurm/slurm.conf
  changed=1
fi

# munge: a key, a daemon, and a credential that round-trips.
if [ ! -s /etc/munge/munge.key ]; then
  su munge -s /bin/sh -c 'mungekey -c' 2>/dev/null || mungekey -c
fi
if ! pgrep -x munged >/dev/null; then
  service munge start >/dev/null 2>&1 || munged --force
fi
for _ in $(seq 20); do
  munge -n 2>/dev/null | unmunge 2>/dev/null | grep -q 'STATUS:.*Success' && break
  sleep 0.5
done
munge -n | unmunge | grep -q 'STATUS:.*Success' || die "munge does not work; see /var/log/munge/munged.log"

# The daemons; a changed configuration restarts the ones that run.
if [ "$changed" = 1 ]; then
  for pidfile in /run/slurmctld.pid /run/slurmd-node1.pid /run/slurmd-node2.pid; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 1
fi
if ! { [ -s /run/slurmctld.pid ] && kill -0 "$(cat /run/slurmctld.pid)" 2>/dev/null; }; then
  say "starting slurmctld"
  slurmctld -i
fi
for n in node1 node2; do
  if ! { [ -s "/run/slurmd-$n.pid" ] && kill -0 "$(cat "/run/slurmd-$n.pid")" 2>/dev/null; }; then
    say "starting slurmd for $n"
    slurmd -N "$n"
  fi
done

# Wait until the controller answers and both nodes are up: idle on a fresh start, or busy
# with jobs when the cluster already ran. Nodes left DOWN/DRAIN by an earlier unclean stop
# are resumed.
for i in $(seq 120); do
  up=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 ~ /^(idle|mix|alloc|comp)$/ {n[$1]=1} END {print length(n)}' || true)
  if [ "${up:-0}" = "2" ]; then
    say "ready: $(sinfo -h -N -o '%N=%t' | sort -u | paste -sd' ')"
    exit 0
  fi
  if [ $((i % 10)) = 0 ]; then
    for n in $(sinfo -h -N -t down,drain,fail -o %N 2>/dev/null | sort -u); do
      scontrol update NodeName="$n" State=RESUME 2>/dev/null || true
    done
  fi
  sleep 1
done
sinfo -N -o '%N %T %E' >&2 || true
die "the nodes did not become idle; see /var/log/slurm/slurmctld.log and slurmd-node*.log"
