#!/usr/bin/env bash
# A real single-node SLURM cluster (munged + slurmctld + slurmd on localhost, as root, without
# systemd) for hpctrain's tests: `cluster.sh start` (idempotent) and `cluster.sh stop`.
# Its own runtime dir and ports, so it does not disturb another local cluster.
#   HPCT_SLURM_DIR [/tmp/hpctrain-slurm]  HPCT_SLURM_PORT [6917: slurmctld; +1 slurmd]
# Clients: export SLURM_CONF=$HPCT_SLURM_DIR/etc/slurm.conf
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${HPCT_SLURM_DIR:-/tmp/hpctrain-slurm}
PORT=${HPCT_SLURM_PORT:-6917}
HOST=$(hostname -s)
CONF=$DIR/etc/slurm.conf
export SLURM_CONF=$CONF
die() { echo "cluster.sh: $*" >&2; exit 1; }
alive() { [[ -s $1 ]] && [[ -r /proc/$(cat "$1")/comm ]] && [[ $(cat /proc/$(cat "$1")/comm) == "$2" ]]; }

start() {
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  for b in munged slurmctld slurmd sinfo scontrol; do command -v $b >/dev/null || die "$b not found (tools/install-deps.sh)"; done
  mkdir -p "$DIR"/{etc,state,spool,run,log,munge,tmp}
  chmod 711 "$DIR/munge"
  sed -e "s|@CLUSTER@|hpcttest|g" -e "s|@HOST@|$HOST|g" -e "s|@RUNDIR@|$DIR|g" -e "s|@CTLD_PORT@|$PORT|g" \
      -e "s|@SLURMD_PORT@|$((PORT + 1))|g" -e "s|@CPUS@|8|g" -e "s|@MEM_MB@|4096|g" -e "s|@MPI_DEFAULT@|pmix|g" \
      -e "s|@CRED_EXPIRE@|5|g" -e "s|@SCHED_INTERVAL@|1|g" -e "s|@PARTITION@|debug|g" "$HERE/slurm.conf.in" > "$CONF"
  : > "$DIR/etc/plugstack.conf"
  if ! alive "$DIR/run/munged.pid" munged; then
    [[ -s $DIR/munge/munge.key ]] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --force --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/run/munged.pid" \
      --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" || die "munged failed ($DIR/log/munged.log)"
    for _ in $(seq 50); do [[ -S $DIR/munge/munge.socket.2 ]] && break; sleep 0.1; done
  fi
  if ! alive "$DIR/run/slurmctld.pid" slurmctld; then
    for p in "$PORT" $((PORT + 1)); do
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && die "port $p is in use (another SLURM cluster?); set HPCT_SLURM_PORT"
    done
    slurmctld -f "$CONF" || die "slurmctld failed ($DIR/log/slurmctld.log)"
    for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
  fi
  alive "$DIR/run/slurmd.pid" slurmd || slurmd -f "$CONF" || die "slurmd failed ($DIR/log/slurmd.log)"
  for _ in $(seq 120); do
    case $(sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -1) in
      idle|mix|alloc) echo "cluster.sh: up ($CONF)"; return 0 ;;
      drain*|down*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  die "node $HOST not idle; logs in $DIR/log"
}

stop() {
  if alive "$DIR/run/slurmctld.pid" slurmctld; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    [[ -n ${jobs// } ]] && scancel $jobs 2>/dev/null
    for _ in $(seq 30); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.5; done
  fi
  for d in slurmd slurmctld munged; do
    if alive "$DIR/run/$d.pid" $d; then
      pid=$(cat "$DIR/run/$d.pid"); kill -TERM "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # slurmstepd of this cluster outlives slurmd, and so can the job's processes (srun, ranks): kill
  # every process of a job of this cluster (SLURM_JOB_ID and this SLURM_CONF in its environment)
  for p in /proc/[0-9]*; do
    env_of=$(tr '\0' '\n' 2>/dev/null < "$p/environ") || continue
    grep -qxF "SLURM_CONF=$CONF" <<< "$env_of" || continue
    if [[ $(cat "$p/comm" 2>/dev/null) == slurmstepd ]] || grep -q '^SLURM_JOB_ID=' <<< "$env_of"; then
      kill -KILL "${p#/proc/}" 2>/dev/null
    fi
  done
  case $DIR in /|/tmp|"") ;; *) rm -rf "$DIR" ;; esac
  echo "cluster.sh: stopped"
}

case ${1:-} in start) start ;; stop) stop ;; *) die "usage: cluster.sh start|stop" ;; esac
