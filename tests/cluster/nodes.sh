#!/usr/bin/env bash
# Emulated nodes on one machine, for real: each node is a network namespace with its own address
# and a UTS namespace with its own hostname (node1, node2, ...), plus a "head" for launchers;
# all are joined by veth pairs to a bridge that lives in a namespace of its own. Addresses exist
# only inside these namespaces, there is no route out, and `stop` removes everything. Open MPI
# reaches the nodes through an rsh agent that enters a node's namespaces instead of ssh, and talks
# TCP between them (shared memory only within a node), as on a real cluster. The file system is
# shared, as a cluster's parallel file system is.
#
#   nodes.sh start [N]          N nodes (default 2, at most 16) and a head; root only
#   nodes.sh run NODE CMD...    run CMD on NODE (head, node1, ...), in the foreground
#   nodes.sh mpirun ARGS...     Open MPI's mpirun on the head, across the nodes (hostfile: every node,
#                               slots = HPCT_NODES_SLOTS per node, default 2), over TCP
#   nodes.sh crash NODE         a lost node: its link goes down (nothing it sends or answers reaches
#                               another node any more, as after a power cut), then every process on
#                               it is killed at once (SIGKILL)
#   nodes.sh revive NODE        the node back, empty: its link up again
#   nodes.sh stop               kill every process on the nodes, remove the namespaces and the dir
#   nodes.sh status             the nodes and their addresses
#
# HPCT_NODES_DIR [/tmp/hpctrain-nodes]: state (names, addresses, the rsh agent, the hostfile). Two
# clusters need two dirs; the namespaces are named after the dir, so they do not collide.
# HPCT_NODES_OWNER [the caller's pid]: when that process ends, even by SIGKILL (a test killed on
# its timeout), a reaper started with the cluster stops it.
set -euo pipefail
DIR=${HPCT_NODES_DIR:-/tmp/hpctrain-nodes}
DIR=${DIR%/}
# Namespace names: "hpct" + a short hash of the dir, so that names stay short (interface names
# are at most 15 characters) and two dirs never share a namespace.
TAG=hpct$(printf '%s' "$DIR" | cksum | cut -c1-6)
BR=$TAG-br
die() { echo "nodes.sh: $*" >&2; exit 1; }

ns_of() {  # a node name or address -> its namespace name
  local n
  [[ -s $DIR/nodes ]] || die "no cluster in $DIR (nodes.sh start)"
  n=$(awk -v h="$1" '$1 == h || $2 == h { print $1 }' "$DIR/nodes")
  [[ -n $n ]] || die "no node '$1' in $DIR/nodes"
  echo "$TAG-$n"
}

node_exec() {  # node, command...: enter the node's network and UTS namespaces
  local node=$1 ns
  shift
  ns=$(ns_of "$node")
  node=$(awk -v h="$node" '$1 == h || $2 == h { print $1 }' "$DIR/nodes")
  exec nsenter --net=/run/netns/"$ns" --uts="$DIR/ns/$node.uts" -- "$@"
}

kill_node() {  # node: SIGKILL every process in its network namespace, until none is left
  local ns=$TAG-$1 pids
  for _ in $(seq 50); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -z $pids ]] && return 0
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  die "processes left on $1 after SIGKILL: $(ip netns pids "$ns" | tr '\n' ' ')"
}

start() {
  local n=${1:-2} i name addr
  [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 16)) || die "N=$n: expected 1 to 16 nodes (one /24 subnet, 2 cores)"
  for b in ip nsenter unshare hostname mpirun; do command -v $b >/dev/null || die "$b not found (tools/install-deps.sh)"; done
  [[ -e $DIR/nodes ]] && die "a cluster is already up in $DIR (nodes.sh stop first)"
  mkdir -p "$DIR/ns"
  echo "${HPCT_NODES_OWNER:-$PPID}" > "$DIR/owner"
  : > "$DIR/nodes.partial"
  trap 'echo "nodes.sh: start failed; removing what it made" >&2; stop >/dev/null 2>&1 || true' ERR
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
  trap - ERR
  # The reaper: stops the cluster when its owner is gone, whatever ended the owner.
  HPCT_NODES_DIR=$DIR setsid "${BASH_SOURCE[0]}" reap </dev/null >/dev/null 2>&1 &
  echo "nodes.sh: $n nodes up in $DIR ($(awk '{ printf "%s%s=%s", (NR > 1 ? " " : ""), $1, $2 }' "$DIR/nodes"))"
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
      umount "$DIR/ns/$name.uts" 2>/dev/null || true
    done
  fi
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
    --mca btl tcp,vader,self --mca btl_tcp_if_include eth0 --mca oob_tcp_if_include eth0 \
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
    ns=$(ns_of "$2") || exit 1
    ip -n "$ns" link set eth0 down
    mkdir -p "$DIR/down" && : > "$DIR/down/$2"
    kill_node "$2"
    echo "nodes.sh: $2 crashed" ;;
  revive)
    (($# == 2)) || die "usage: nodes.sh revive NODE"
    ns=$(ns_of "$2") || exit 1
    ip -n "$ns" link set eth0 up
    rm -f "$DIR/down/$2"
    echo "nodes.sh: $2 is back" ;;
  status) cat "$DIR/nodes" 2>/dev/null || echo "nodes.sh: no cluster in $DIR" ;;
  *) die "usage: nodes.sh start [N] | run NODE CMD... | mpirun ARGS... | crash NODE | revive NODE | stop | status" ;;
esac
