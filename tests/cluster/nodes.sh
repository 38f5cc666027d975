#!/usr/bin/env bash
# Emulated nodes on one machine, for real: each node is a network namespace with its own address
# and a UTS namespace with its own hostname (node1, node2, ...), plus a "head" for launchers;
# all are joined by veth pairs to a bridge that lives in a namespace of its own. Addresses exist
# only inside these namespaces, there is no route out, and `stop` removes everything. Open MPI
# reaches the nodes through an rsh agent that enters a node's namespaces instead of ssh, and talks
# TCP between them (shared memory only within a node), as on a real cluster. The file system is
# shared, as a cluster's parallel file system is, except $HPCT_NODES_DIR/slurm/tmp: each node has
# its own there (a mount namespace per node), as each node has its own local scratch.
#
#   nodes.sh start [N] [--slurm]  N nodes (default 2, at most 16) and a head; root only. --slurm:
#                               a SLURM cluster on them: slurmctld on the head, one slurmd per node
#                               (NodeName = its host name), munged through its socket file; clients
#                               run on the head (`nodes.sh run head sbatch ...`, SLURM_CONF is set)
#   nodes.sh run NODE CMD...    run CMD on NODE (head, node1, ...), in the foreground
#   nodes.sh mpirun ARGS...     Open MPI's mpirun on the head, across the nodes (hostfile: every node,
#                               slots = HPCT_NODES_SLOTS per node, default 2), over TCP
#   nodes.sh crash NODE         a lost node: its link goes down (nothing it sends or answers reaches
#                               another node any more, as after a power cut), then every process on
#                               it is killed at once (SIGKILL)
#   nodes.sh revive NODE        the node back as after a boot: its link up again, its local scratch
#                               and slurmd spool empty, its slurmd started
#   nodes.sh stop               kill every process on the nodes, remove the namespaces and the dir
#   nodes.sh status             the nodes and their addresses
#
# HPCT_NODES_DIR [/tmp/hpctrain-nodes]: state (names, addresses, the rsh agent, the hostfile). Two
# clusters need two dirs; the namespaces are named after the dir, so they do not collide.
# HPCT_NODES_OWNER [unset]: a pid; when that process ends, even by SIGKILL (a test killed on its
# timeout), a reaper started with the cluster stops it. Tests set it to their own pid.
set -euo pipefail
DIR=${HPCT_NODES_DIR:-/tmp/hpctrain-nodes}
DIR=${DIR%/}
# Namespace names: "hpct" + a short hash of the dir, so that names stay short (interface names
# are at most 15 characters) and two dirs never share a namespace.
TAG=hpct$(printf '%s' "$DIR" | cksum | cut -c1-6)
BR=$TAG-br
die() { echo "nodes.sh: $*" >&2; exit 1; }

node_of() {  # a node name or address -> its name (its namespaces are $TAG-<name>, ns/<name>.*)
  local n
  [[ -s $DIR/nodes ]] || die "no cluster in $DIR (nodes.sh start)"
  n=$(awk -v h="$1" '$1 == h || $2 == h { print $1 }' "$DIR/nodes")
  [[ -n $n ]] || die "no node '$1' in $DIR/nodes"
  echo "$n"
}

node_exec() {  # node, command...: enter the node's network, UTS and mount namespaces
  local node mnt=()
  node=$(node_of "$1") || exit 1
  shift
  [[ -e $DIR/slurm/etc/slurm.conf ]] && export SLURM_CONF=$DIR/slurm/etc/slurm.conf
  [[ $node == head ]] || mnt=(--mount="$DIR/ns/$node.mnt")
  exec nsenter --net=/run/netns/"$TAG-$node" --uts="$DIR/ns/$node.uts" "${mnt[@]}" -- "$@"
}

start_slurmd() {  # node
  (node_exec "$1" slurmd -f "$DIR/slurm/etc/slurm.conf" -N "$1") || die "slurmd on $1 failed ($DIR/slurm/log/slurmd-$1.log)"
}

kill_node() {  # node: SIGKILL every process in its network namespace, until none is left
  local ns=$TAG-$1 pids
  for _ in $(seq 50); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -z $pids ]] && return 0
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  echo "nodes.sh: processes left on $1 after SIGKILL: $(ip netns pids "$ns" | tr '\n' ' ')" >&2
  return 1  # not die: stop goes on with the other nodes
}

start() {
  local n=2 slurm=0 i name addr
  for a in "$@"; do
    case $a in --slurm) slurm=1 ;; *) n=$a ;; esac
  done
  [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 16)) || die "N=$n: expected 1 to 16 nodes (one /24 subnet, 2 cores)"
  for b in ip nsenter unshare hostname mpirun; do command -v $b >/dev/null || die "$b not found (tools/install-deps.sh)"; done
  [[ -e $DIR/nodes ]] && die "a cluster is already up in $DIR (nodes.sh stop first)"
  mkdir -p "$DIR/ns" "$DIR/slurm/tmp"
  [[ -z ${HPCT_NODES_OWNER:-} ]] || echo "$HPCT_NODES_OWNER" > "$DIR/owner"
  : > "$DIR/nodes.partial"
  trap 'echo "nodes.sh: start failed; removing what it made" >&2; stop >/dev/null 2>&1 || true' ERR
  # Persistent mount namespaces are bind mounts of nsfs files: their directory must be a private
  # mount, or the bind would propagate (and be refused).
  mount --bind "$DIR/ns" "$DIR/ns"
  mount --make-private "$DIR/ns"
  ip netns add "$BR"
  ip -n "$BR" link set lo up
  ip -n "$BR" link add br0 type bridge
  ip -n "$BR" link set br0 up
  for i in $(seq 0 "$n"); do
    if ((i == 0)); then name=head; else name=node$i; fi
    addr=10.77.0.$((i + 1))
    ip netns add "$TAG-$name"
    ip -n "$BR" link add "v$name" type veth peer name eth0 netns "$TAG-$name"
    ip -n "$BR" link set "v$name" master br0 up
    ip -n "$TAG-$name" link set lo up
    ip -n "$TAG-$name" addr add "$addr/24" dev eth0
    ip -n "$TAG-$name" link set eth0 up
    : > "$DIR/ns/$name.uts"
    unshare --uts="$DIR/ns/$name.uts" hostname "$name"
    echo "$name $addr" >> "$DIR/nodes.partial"
  done
  # A mount namespace per node, with its own local scratch on $DIR/slurm/tmp. Made last: a mount
  # namespace sees the namespace files bound before it was made, and a node's must see every UTS
  # namespace. The head keeps this machine's: launchers there (mpirun's rsh agent) enter any node.
  for name in $(awk '$1 != "head" { print $1 }' "$DIR/nodes.partial"); do
    mkdir -p "$DIR/local/$name"
    : > "$DIR/ns/$name.mnt"
    unshare --mount="$DIR/ns/$name.mnt" --propagation private mount --bind "$DIR/local/$name" "$DIR/slurm/tmp"
  done
  # The rsh agent Open MPI runs as `agent [-x] HOST COMMAND...` (the command is one shell line), in
  # place of ssh. Like ssh to a node that lost power, it neither ends nor says anything while its
  # node is down: mpirun must learn of the loss from the job, not from its launcher.
  cat > "$DIR/rsh" <<EOF
#!/usr/bin/env bash
[[ \${1:-} == -x ]] && shift
host=\$1; shift
node=\$(awk -v h="\$host" '\$1 == h || \$2 == h { print \$1 }' "$DIR/nodes")
"$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/nodes.sh" run "\$host" /bin/sh -c "\$*" &
child=\$!
trap 'kill -TERM \$child 2>/dev/null' TERM INT HUP
wait \$child; rc=\$?
while [[ -e "$DIR/down/\$node" ]]; do sleep 1; done
exit \$rc
EOF
  chmod +x "$DIR/rsh"
  mv "$DIR/nodes.partial" "$DIR/nodes"
  awk '$1 != "head" { print $1 " slots='"${HPCT_NODES_SLOTS:-2}"'" }' "$DIR/nodes" > "$DIR/hostfile"
  # Every link is up (the bridge has no STP: a port forwards as soon as it is up).
  for name in $(awk '{ print $1 }' "$DIR/nodes"); do
    for i in $(seq 50); do
      ip -n "$TAG-$name" link show eth0 | grep -q 'state UP' && break
      ((i < 50)) || die "$name: eth0 did not come up"
      sleep 0.1
    done
  done
  ((slurm == 0)) || start_slurm
  trap - ERR
  # The reaper: stops the cluster when its owner is gone, whatever ended the owner.
  [[ ! -s $DIR/owner ]] || HPCT_NODES_DIR=$DIR setsid "${BASH_SOURCE[0]}" reap </dev/null >/dev/null 2>&1 &
  echo "nodes.sh: $n nodes up in $DIR ($(awk '{ printf "%s%s=%s", (NR > 1 ? " " : ""), $1, $2 }' "$DIR/nodes"))"
}

start_slurm() {
  local S=$DIR/slurm name addr conf=$DIR/slurm/etc/slurm.conf here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  for b in munged slurmctld slurmd sinfo scontrol srun; do command -v $b >/dev/null || die "$b not found (tools/install-deps.sh)"; done
  mkdir -p "$S"/{etc,state,spool,run,log,munge}
  chmod 711 "$S/munge"
  # The single-node test cluster's settings (tests/slurm/slurm.conf.in), with the controller on
  # the head, per-node pid, log and spool files (%n), and a short node timeout: a node that stops
  # answering is DOWN after 10 s.
  sed -e "s|@CLUSTER@|hpctnodes|g" -e "s|@HOST@(127.0.0.1)|head($(awk '$1 == "head" { print $2 }' "$DIR/nodes"))|" \
      -e "s|@RUNDIR@|$S|g" -e "s|@CTLD_PORT@|6817|g" -e "s|@SLURMD_PORT@|6818|g" -e "s|@MPI_DEFAULT@|pmix|g" \
      -e "s|@CRED_EXPIRE@|5|g" -e "s|@SCHED_INTERVAL@|1|g" \
      -e "s|^SlurmdPidFile=.*|SlurmdPidFile=$S/run/slurmd-%n.pid|" -e "s|^SlurmdLogFile=.*|SlurmdLogFile=$S/log/slurmd-%n.log|" \
      -e "s|^SlurmdSpoolDir=.*|SlurmdSpoolDir=$S/spool/%n|" -e "s|^SlurmdTimeout=.*|SlurmdTimeout=10|" \
      -e "/^NodeName=/d" -e "/^PartitionName=/d" "$here/../slurm/slurm.conf.in" > "$conf"
  awk '$1 != "head" { print "NodeName=" $1 " NodeAddr=" $2 " CPUs=4 RealMemory=4096 State=UNKNOWN" }' "$DIR/nodes" >> "$conf"
  echo "PartitionName=debug Nodes=$(awk '$1 != "head" { printf "%s%s", (n++ ? "," : ""), $1 }' "$DIR/nodes") Default=YES MaxTime=INFINITE State=UP" >> "$conf"
  : > "$S/etc/plugstack.conf"
  dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$S/munge/munge.key"
  munged --force --socket="$S/munge/munge.socket.2" --key-file="$S/munge/munge.key" --pid-file="$S/run/munged.pid" \
    --log-file="$S/log/munged.log" --seed-file="$S/munge/munged.seed" || die "munged failed ($S/log/munged.log)"
  for _ in $(seq 50); do [[ -S $S/munge/munge.socket.2 ]] && break; sleep 0.1; done
  export SLURM_CONF=$conf
  # nsenter, not `ip netns exec`: that one remounts /sys without the cgroup file system, and slurmd
  # then refuses to start.
  (node_exec head slurmctld -f "$conf") || die "slurmctld failed ($S/log/slurmctld.log)"
  for _ in $(seq 100); do (node_exec head scontrol ping 2>/dev/null) | grep -q 'is UP' && break; sleep 0.2; done
  for name in $(awk '$1 != "head" { print $1 }' "$DIR/nodes"); do
    start_slurmd "$name"
  done
  wait_idle
}

wait_idle() {  # until every node is idle (at most 60 s)
  local states
  for _ in $(seq 120); do
    states=$( (node_exec head sinfo -h -N -o '%N %t') 2>/dev/null | sort -u)
    if [[ -n $states ]] && ! grep -vq ' idle$' <<< "$states"; then return 0; fi
    for name in $(awk '$2 ~ /^(down|drain)/ { print $1 }' <<< "$states"); do
      (node_exec head scontrol update nodename="$name" state=resume) 2>/dev/null || true
    done
    sleep 0.5
  done
  die "nodes not idle after 60 s: $(tr '\n' ' ' <<< "$states"); logs in $DIR/slurm/log"
}

reap() {
  local owner
  owner=$(cat "$DIR/owner" 2>/dev/null) || exit 0
  while [[ -e $DIR/nodes ]] && kill -0 "$owner" 2>/dev/null; do sleep 1; done
  [[ -e $DIR/nodes ]] && stop >/dev/null 2>&1
  exit 0
}

stop() {
  local name
  if [[ -e $DIR/nodes || -e $DIR/nodes.partial ]]; then
    for name in $(cat "$DIR/nodes" "$DIR/nodes.partial" 2>/dev/null | awk '{ print $1 }'); do
      kill_node "$name" || true
      ip netns del "$TAG-$name" 2>/dev/null || true
      umount "$DIR/ns/$name.mnt" 2>/dev/null || true
      umount "$DIR/ns/$name.uts" 2>/dev/null || true
    done
  fi
  if [[ -s $DIR/slurm/run/munged.pid ]]; then
    local pid
    pid=$(cat "$DIR/slurm/run/munged.pid")
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == munged ]] && kill -KILL "$pid" 2>/dev/null
  fi
  umount "$DIR/ns" 2>/dev/null || true
  ip netns del "$BR" 2>/dev/null || true
  case $DIR in /|/tmp|"") ;; *) rm -rf "$DIR" ;; esac
  echo "nodes.sh: stopped"
}

mpirun_across() {
  [[ -s $DIR/hostfile ]] || die "no cluster in $DIR (nodes.sh start)"
  local root=()
  [[ $(id -u) -eq 0 ]] && root=(--allow-run-as-root)
  # TCP between nodes, shared memory within one; out-of-band and data traffic on the bridge only.
  # mpirun learns that a node is gone only from TCP keepalive on its daemon's connection (Open
  # MPI's default: 300 s idle, then 9 probes 20 s apart): here 5 s and 3 probes 2 s apart.
  node_exec head mpirun "${root[@]}" --hostfile "$DIR/hostfile" --mca plm_rsh_agent "$DIR/rsh" \
    --mca btl tcp,vader,self --mca btl_tcp_if_include eth0 --mca oob_tcp_if_include eth0 --mca plm_rsh_no_tree_spawn 1 \
    --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3 "$@"
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) stop ;;
  reap) reap ;;
  run) shift; (($# >= 2)) || die "usage: nodes.sh run NODE CMD..."; node_exec "$@" ;;
  mpirun) shift; mpirun_across "$@" ;;
  crash)
    (($# == 2)) || die "usage: nodes.sh crash NODE"
    node=$(node_of "$2") || exit 1
    ip -n "$TAG-$node" link set eth0 down
    mkdir -p "$DIR/down" && : > "$DIR/down/$node"
    kill_node "$node" || exit 1
    echo "nodes.sh: $node crashed" ;;
  revive)
    (($# == 2)) || die "usage: nodes.sh revive NODE"
    node=$(node_of "$2") || exit 1
    ip -n "$TAG-$node" link set eth0 up
    rm -f "$DIR/down/$node"
    # A node that boots again has an empty local scratch and slurmd spool: left as they were, the
    # PMIx directory and step sockets of a job step killed with the node make a step of the same
    # id fail to launch there (a requeued job numbers its steps from 0 again).
    rm -rf "${DIR:?}/local/$node/"* "${DIR:?}/slurm/spool/$node"
    if [[ -e $DIR/slurm/etc/slurm.conf ]]; then  # a booted node starts its slurmd
      start_slurmd "$node"
      wait_idle
    fi
    echo "nodes.sh: $node is back" ;;
  status) cat "$DIR/nodes" 2>/dev/null || echo "nodes.sh: no cluster in $DIR" ;;
  *) die "usage: nodes.sh start [N] | run NODE CMD... | mpirun ARGS... | crash NODE | revive NODE | stop | status" ;;
esac
